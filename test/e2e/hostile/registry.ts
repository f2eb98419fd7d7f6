/**
 * Issue 12: the broker leaves `/kiteq/pub` to the producers (kiteq-client-go registers itself
 * there), on a live broker in ZooKeeper mode: consumers and producers that handshake write
 * nothing there through the broker, a producer's own node is left alone, and their traffic flows.
 */
import type { Client } from "node-zookeeper-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBinding } from "../../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../../src/client/connection.js";
import { closeZooKeeper, connectZooKeeper } from "../../../src/registry/zk-connect.js";
import { zkCreate, zkGetChildren } from "../../../src/registry/zk-ops.js";
import { upsertBinding } from "../../../src/store/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../../support/broker-process.js";
import { recordingConsumer, waitFor } from "../../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../../support/db.js";
import { startZooKeeper, type TestZooKeeper } from "../../support/zookeeper.js";

describe("hostile: /kiteq/pub belongs to the producers", () => {
  let zk: TestZooKeeper;
  let db: TestDatabase;
  let client: Client;
  let broker: BrokerProcess;
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    [zk, db] = await Promise.all([startZooKeeper(), createTestDatabase()]);
    client = await connectZooKeeper(zk.connectString, {
      sessionTimeoutMs: 4000,
      connectTimeoutMs: 3000,
      retries: 3,
    });
    await upsertBinding(
      db.pool,
      createBinding({ groupId: "pub-c", topic: "pubt", messageType: "m", bindType: 0, persistent: true }),
      "cli",
      new Date(),
    );
    broker = await startBrokerProcess([
      "--db",
      db.url,
      "--registry",
      `zk://${zk.connectString}?timeout=4s`,
      "--topics",
      "pubt",
    ]);
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    await broker?.kill();
    if (client) await closeZooKeeper(client);
    await zk?.stop();
    await db?.drop();
  });

  it("handshakes of consumers and producers write nothing under /kiteq/pub; a producer's own node stays", async () => {
    // What kiteq-client-go's PublishTopics writes for itself.
    await zkCreate(client, "/kiteq/pub/pubt/self-p/127.0.0.1:9999", { ephemeral: true });
    const consumer = await recordingConsumer(broker.port, "pub-c", () => true);
    conns.push(consumer.conn);
    const producer = await KiteqConnection.connect({
      host: broker.host,
      port: broker.port,
      groupId: "other-p",
    });
    conns.push(producer);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const h = buildHeader({ topic: "pubt", messageType: "m", groupId: "other-p" });
      expect((await producer.publish(h, "x")).status).toBe(true);
      ids.push(h.messageId);
    }
    await waitFor(() => consumer.received.length === 20, 10_000, "20 deliveries");
    expect(new Set(consumer.ids())).toEqual(new Set(ids));
    expect((await zkGetChildren(client, "/kiteq/pub/pubt")) ?? []).toEqual(["self-p"]);
    expect(await zkGetChildren(client, "/kiteq/pub/pubt/self-p")).toEqual(["127.0.0.1:9999"]);
  });
});
