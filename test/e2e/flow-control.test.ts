import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBinding } from "../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

describe("e2e: flow control, receive protection, fly messages", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    const bind = (groupId: string, topic: string, watermark: number) =>
      upsertBinding(
        db.pool,
        createBinding({ groupId, topic, messageType: "m", bindType: 0, watermark, persistent: true }),
        "cli",
        new Date(),
      );
    await bind("slow", "slow", 10);
    await bind("flyers", "fly", 1000);
    await bind("warm", "warm", 100);
    await bind("flylow", "flylow", 10);
    broker = await startBrokerProcess(["--db", db.url, "--recieve-permits-per-second", "200"]);
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    expect(await broker.stop()).toBe(0);
    await db.drop();
  });
  const producer = async () => {
    const c = await KiteqConnection.connect({
      host: broker.host,
      port: broker.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    conns.push(c);
    return c;
  };

  it("answers publishes beyond the receive permits with false and a clear reason", async () => {
    const p = await producer();
    await new Promise((r) => setTimeout(r, 1100)); // a full bucket
    const acks = await Promise.all(
      Array.from({ length: 600 }, () =>
        p.publish(buildHeader({ topic: "other", messageType: "m", groupId: "p" }), "x"),
      ),
    );
    const refused = acks.filter((a) => !a.status);
    expect(refused.length).toBeGreaterThan(300);
    expect(acks.filter((a) => a.status).length).toBeGreaterThanOrEqual(190);
    expect(refused[0]!.feedback).toMatch(/receive rate limit/);
  });

  it("limits a group to its watermark (messages per second) without spending attempts", async () => {
    const p = await producer();
    await new Promise((r) => setTimeout(r, 1100));
    for (let i = 0; i < 25; i++) {
      expect(
        (await p.publish(buildHeader({ topic: "slow", messageType: "m", groupId: "p" }), "x")).status,
      ).toBe(true);
    }
    const c = await recordingConsumer(broker.port, "slow");
    conns.push(c.conn);
    const started = Date.now();
    await waitFor(() => c.received.length === 25, 10_000, "25 deliveries at 10/s");
    // Burst 5, then 10/s: 20 more need about 2 s.
    expect(Date.now() - started).toBeGreaterThan(1500);
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM message_events WHERE group_id = 'slow' AND kind = 'nacked'",
    );
    expect(rows[0].n).toBe(0);
  });

  it("a group whose only consumer is warming up gets its share of the rate, ramping up", async () => {
    const p = await producer();
    await new Promise((r) => setTimeout(r, 1100));
    for (let i = 0; i < 300; i += 50) {
      const acks = await Promise.all(
        Array.from({ length: 50 }, () =>
          p.publish(buildHeader({ topic: "warm", messageType: "m", groupId: "p" }), "x"),
        ),
      );
      expect(acks.every((a) => a.status)).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
    }
    const received: number[] = [];
    const c = await KiteqConnection.connect({
      host: "127.0.0.1",
      port: broker.port,
      groupId: "warm",
      heartbeatMs: 0,
      warmingupSec: 10,
      onMessage: () => {
        received.push(Date.now());
        return true;
      },
    });
    conns.push(c);
    const started = Date.now();
    await new Promise((r) => setTimeout(r, 2_000));
    // At 100/s with a burst of 50, 250 in the first 2 s at full rate (before: the ramp did nothing
    // for a lone consumer); at weight t / 10 s, about 20.
    expect(received.length).toBeLessThan(100);
    await waitFor(() => received.length === 300, 20_000, "all 300 as the weight reaches 1");
    expect(received.at(-1)! - started).toBeGreaterThan(5_000);
  }, 40_000);

  it("pushes a fly message to the online consumers of bound groups and stores nothing", async () => {
    const c = await recordingConsumer(broker.port, "flyers");
    conns.push(c.conn);
    const p = await producer();
    await new Promise((r) => setTimeout(r, 1100));
    const ack = await p.publish(
      buildHeader({ topic: "fly", messageType: "m", groupId: "p", fly: true }),
      "zoom",
    );
    expect(ack.status).toBe(true);
    await waitFor(() => c.received.length === 1, 5000, "fly delivery");
    expect(c.received[0]!.header.fly).toBe(true);
    expect(c.received[0]!.body).toBe("zoom");
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM messages WHERE topic = 'fly'");
    expect(rows[0].n).toBe(0);
  });

  it("holds fly pushes to the group's watermark too", async () => {
    const c = await recordingConsumer(broker.port, "flylow");
    conns.push(c.conn);
    const p = await producer();
    await new Promise((r) => setTimeout(r, 1100));
    const acks = await Promise.all(
      Array.from({ length: 100 }, () =>
        p.publish(buildHeader({ topic: "flylow", messageType: "m", groupId: "p", fly: true }), "f"),
      ),
    );
    expect(acks.every((a) => a.status)).toBe(true);
    await new Promise((r) => setTimeout(r, 1_000));
    // Watermark 10/s, burst 5: about 5-15 in this second. Before: all 100 at once.
    expect(c.received.length).toBeGreaterThan(0);
    expect(c.received.length).toBeLessThan(30);
  });
});
