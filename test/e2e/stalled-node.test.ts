/**
 * A node that does not run for longer than the delivery timeout (paused, frozen, starved of CPU)
 * while its consumer answers a push: when it runs again the answer waits unread in its socket,
 * and its push-timeout sweep ran first. Before, the push was nacked for the node's own absence
 * and redelivered though the consumer had acked it (a walkthrough: a node paused 20 s). The stall
 * is made inside the broker (test/support/stall-on-signal.mjs: SIGUSR2 blocks its event loop).
 */
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const STALL = path.resolve(import.meta.dirname, "../support/stall-on-signal.mjs");

let db: TestDatabase;
let broker: BrokerProcess | undefined;
const conns: KiteqConnection[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await bind(db.pool, { groupId: "g", topic: "t", messageType: "m" });
});

afterAll(async () => {
  for (const c of conns) c.close();
  await broker?.kill();
  await db?.drop();
});

it("a push answered while its node did not run is not timed out for the node's absence", async () => {
  broker = await startBrokerProcess(
    ["--db", db.url, "--delivery-seconds", "2", "--lease-seconds", "10", "--recieve-permits-per-second", "0"],
    { env: { NODE_OPTIONS: `--import=${STALL}`, KQ_TEST_STALL_MS: "3500" } },
  );
  const consumer = await recordingConsumer(broker.port, "g");
  consumer.conn.onMessage(async (m) => {
    consumer.received.push(m);
    await new Promise((r) => setTimeout(r, 500));
    return true;
  });
  const producer = await KiteqConnection.connect({
    host: broker.host,
    port: broker.port,
    groupId: "p",
    heartbeatMs: 0,
  });
  conns.push(consumer.conn, producer);
  const h = buildHeader({ topic: "t", messageType: "m", groupId: "p" });
  expect((await producer.publish(h, "x")).status).toBe(true);
  await waitFor(() => consumer.received.length === 1, 10_000, "the push");
  // The node stops for 3.5 s; its consumer acks 0.5 s into it, 1.5 s within the timeout.
  broker.child.kill("SIGUSR2");
  await waitFor(
    async () => {
      const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'g'");
      return rows[0].n === 0;
    },
    15_000,
    "the ack written",
  );
  await new Promise((r) => setTimeout(r, 500));
  const { rows } = await db.pool.query<{ kind: string }>(
    "SELECT kind::text FROM message_events WHERE group_id = 'g' ORDER BY at",
  );
  // The push and its ack (read 3.5 s after the push, so not merged into one row); no nack.
  expect(rows.map((r) => r.kind)).toEqual(["delivered", "acked"]);
  expect(consumer.ids()).toEqual([h.messageId]);
  expect(
    broker.logs.some((l) => typeof l.msg === "string" && l.msg.startsWith("this node did not run")),
  ).toBe(true);
}, 60_000);
