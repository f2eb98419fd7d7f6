/**
 * Issue 11 end to end: a broker serving a 100,000-delivery backlog to a consumer that never acks
 * exits within its grace period (plus 5 s) on SIGTERM, with exit code 0; and messages whose
 * producer's clock is far off (createTime 10 days ahead, 40 days back) are stored in the day the
 * broker received them and delivered normally.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBinding } from "../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { MIN_UNANSWERED } from "../../src/delivery/answer-pace.js";
import { buildBacklog } from "../../src/store/backlog-fixture.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { ensurePartitions } from "../../src/store/db.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const GRACE_SECONDS = 10;
const DAY = 86_400;

describe("e2e: production-size backlog", () => {
  let db: TestDatabase;
  const brokers: BrokerProcess[] = [];
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    for (const b of brokers) await b.kill();
    await db.drop();
  });

  it(`SIGTERM with 100,000 owed and a consumer that never acks: exit 0 within ${GRACE_SECONDS} + 5 s`, async () => {
    const fx = await buildBacklog(db.pool, { owed: 100_000, now: new Date() });
    await upsertBinding(
      db.pool,
      createBinding({
        groupId: fx.group,
        topic: fx.topic,
        messageType: "backlog",
        bindType: 0,
        watermark: 6000,
        persistent: true,
      }),
      "cli",
      new Date(),
    );
    const b = await startBrokerProcess([
      "--db",
      db.url,
      "--node-id",
      "backlog-node",
      "--recover-seconds",
      "1",
      "--shutdown-grace-seconds",
      String(GRACE_SECONDS),
    ]);
    brokers.push(b);
    const silent = await recordingConsumer(b.port, fx.group, () => "ignore");
    conns.push(silent.conn);
    // A connection that never answers holds MIN_UNANSWERED pushes (answer-pace.ts), not 2,000.
    await waitFor(() => silent.received.length >= MIN_UNANSWERED, 20_000, "pushes to the silent consumer");
    // Let the sweeps, claims and lease renewals run against the backlog for a moment.
    await new Promise((r) => setTimeout(r, 2000));
    const t0 = Date.now();
    const code = await b.stop();
    const seconds = (Date.now() - t0) / 1000;
    console.log(`SIGTERM -> exit with 100,000 owed: ${seconds.toFixed(2)} s, exit code ${code}`);
    expect(code).toBe(0);
    expect(seconds).toBeLessThan(GRACE_SECONDS + 5);
    // Nothing was lost: every owed delivery is still owed, none held by the stopped node.
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n, count(*) FILTER (WHERE claimed_by LIKE 'backlog-node/%')::int AS held FROM deliveries WHERE group_id = $1",
      [fx.group],
    );
    expect(rows[0].n).toBe(100_000);
    expect(rows[0].held).toBe(0);
  });

  it("createTime 10 days ahead and 40 days back: stored in today's partition, delivered normally", async () => {
    await upsertBinding(
      db.pool,
      createBinding({ groupId: "clock", topic: "ct", messageType: "m", bindType: 0, persistent: true }),
      "cli",
      new Date(),
    );
    const b = await startBrokerProcess(["--db", db.url, "--node-id", "clock-node"]);
    brokers.push(b);
    const consumer = await recordingConsumer(b.port, "clock", () => true);
    conns.push(consumer.conn);
    const producer = await KiteqConnection.connect({
      host: b.host,
      port: b.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    conns.push(producer);
    const nowSec = Math.floor(Date.now() / 1000);
    const headers = [nowSec + 10 * DAY, nowSec - 40 * DAY].map((createTime) =>
      buildHeader({ topic: "ct", messageType: "m", groupId: "p", createTime }),
    );
    for (const h of headers) {
      const ack = await producer.publish(h, "x");
      expect(ack.status, ack.feedback).toBe(true);
    }
    await waitFor(() => consumer.received.length === 2, 10_000, "both delivered");
    expect(consumer.received.map((m) => m.header.createTime).sort()).toEqual(
      headers.map((h) => h.createTime).sort(),
    );
    const today = `messages_p${new Date().toISOString().slice(0, 10).replaceAll("-", "")}`;
    const { rows } = await db.pool.query(
      "SELECT tableoid::regclass::text AS p FROM messages WHERE message_id = ANY($1)",
      [headers.map((h) => h.messageId)],
    );
    expect(rows.map((r) => r.p)).toEqual([today, today]);
    await b.stop();
  });
});
