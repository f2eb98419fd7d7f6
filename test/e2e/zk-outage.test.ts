/**
 * A ZooKeeper outage stops no delivery: a node cut off from ZooKeeper goes on claiming, since no
 * node takes over the work of one that holds its PostgreSQL liveness lock (before: every node
 * paused its claims for the whole outage, so a redelivery waited for ZooKeeper, and 16-30 s more).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { freePort } from "../../src/store/embedded.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { startZooKeeper, type TestZooKeeper } from "../support/zookeeper.js";

let db: TestDatabase;
let zk: TestZooKeeper;
let broker: BrokerProcess | undefined;
const conns: KiteqConnection[] = [];

beforeAll(async () => {
  [db, zk] = await Promise.all([createTestDatabase(), startZooKeeper()]);
  await bind(db.pool, { groupId: "g", topic: "t", messageType: "m" });
});

afterAll(async () => {
  for (const c of conns) c.close();
  await broker?.kill();
  await zk?.stop();
  await db?.drop();
});

it("redelivers while ZooKeeper is down", async () => {
  const admin = await freePort();
  broker = await startBrokerProcess(
    [
      "--db",
      db.url,
      "--registry",
      `zk://${zk.connectString}?timeout=4s`,
      "--topics",
      "t",
      "--recieve-permits-per-second",
      "0",
    ],
    { admin: `127.0.0.1:${admin}` },
  );
  // Whether clients can find the node: before, nothing in /metrics or /healthz said.
  const registered = async () => {
    const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    return /^kiteq_registry_registered (\S+)$/m.exec(text)?.[1];
  };
  expect(await registered()).toBe("1");
  // The first push is answered false: its redelivery needs a claim.
  const consumer = await recordingConsumer(broker.port, "g", (_m, n) => n > 1);
  const producer = await KiteqConnection.connect({
    host: broker.host,
    port: broker.port,
    groupId: "p",
    heartbeatMs: 0,
  });
  conns.push(consumer.conn, producer);
  zk.kill();
  await waitFor(
    () => broker!.logs.some((l) => String(l.msg).startsWith("ZooKeeper session lost")),
    15_000,
    "the node saw the outage",
  );
  const h = buildHeader({ topic: "t", messageType: "m", groupId: "p" });
  expect((await producer.publish(h, "x")).status).toBe(true);
  await waitFor(() => consumer.received.length >= 2, 8_000, "redelivery during the outage");
  expect(consumer.ids()).toEqual([h.messageId, h.messageId]);
  expect(await registered()).toBe("0");
  await zk.restart();
  await expect.poll(registered, { timeout: 20_000 }).toBe("1");
}, 60_000);
