/**
 * Issue 12: a messageId is stored once within the retention window whatever its createTime. A
 * repeat (a retry after a lost ack, or a producer reusing an id with another createTime) is
 * answered true with "duplicate" and never delivered again; another producer's traffic at the
 * same moment is unaffected.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType, createBinding } from "../../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../../src/client/connection.js";
import { upsertBinding } from "../../../src/store/bindings.js";
import { messageHistory } from "../../../src/store/history.js";
import { type BrokerProcess, startBrokerProcess } from "../../support/broker-process.js";
import { recordingConsumer, waitFor } from "../../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../../support/db.js";

describe("hostile: the same messageId under other createTimes", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    await upsertBinding(
      db.pool,
      createBinding({
        groupId: "dup-c",
        topic: "dup",
        messageType: "*",
        bindType: BindType.Fanout,
        persistent: true,
      }),
      "cli",
      new Date(),
    );
    broker = await startBrokerProcess(["--db", db.url, "--recieve-permits-per-second", "0"]);
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    await broker.kill();
    await db.drop();
  });

  it("a repeat is acked true as a duplicate and never delivered again; others unaffected", async () => {
    const consumer = await recordingConsumer(broker.port, "dup-c", () => true);
    conns.push(consumer.conn);
    const reuser = await KiteqConnection.connect({ host: "127.0.0.1", port: broker.port, groupId: "p1" });
    const other = await KiteqConnection.connect({ host: "127.0.0.1", port: broker.port, groupId: "p2" });
    conns.push(reuser, other);
    const nowSec = Math.floor(Date.now() / 1000);
    const first = buildHeader({ topic: "dup", messageType: "m", groupId: "p1", createTime: nowSec });
    expect((await reuser.publish(first, "first")).status).toBe(true);
    await waitFor(() => consumer.received.length === 1, 10_000, "the first delivery");

    const repeats = [nowSec - 3 * 86_400, nowSec + 2 * 86_400, nowSec].map((createTime) => ({
      ...first,
      createTime,
    }));
    const good = Array.from({ length: 200 }, () =>
      buildHeader({ topic: "dup", messageType: "m", groupId: "p2" }),
    );
    const [repeatAcks, goodAcks] = await Promise.all([
      Promise.all(repeats.map((h, i) => reuser.publish(h, `repeat ${i}`))),
      Promise.all(good.map((h) => other.publish(h, "good"))),
    ]);
    for (const a of repeatAcks) {
      expect(a.status).toBe(true);
      expect(a.feedback).toMatch(/^duplicate/);
    }
    expect(goodAcks.every((a) => a.status)).toBe(true);
    await waitFor(() => consumer.received.length >= 201, 10_000, "the other producer's 200");
    await new Promise((r) => setTimeout(r, 500));
    const ids = consumer.ids();
    expect(ids.filter((id) => id === first.messageId)).toHaveLength(1);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toHaveLength(201);
    const h = await messageHistory(db.pool, first.messageId);
    expect(h?.events.filter((e) => e.kind === "received")).toHaveLength(1);
    expect(h?.createdAt.getTime()).toBe(nowSec * 1000);
  });
});
