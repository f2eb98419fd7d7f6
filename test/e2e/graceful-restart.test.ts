/**
 * A graceful stop (SIGTERM: a rolling restart) waits, within one delivery timeout and half the
 * grace period, for the answers of the pushes in flight. Before, it released them at once: the
 * consumer finished them, its acks went nowhere, and the next node delivered them again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType } from "../../src/binding/binding.js";
import { createConsumer, createProducer } from "../../src/client/index.js";
import { freePort } from "../../src/store/embedded.js";
import { messageHistory } from "../../src/store/history.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

describe("e2e: a graceful restart of the broker a consumer works from", () => {
  let db: TestDatabase;
  const brokers: BrokerProcess[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    // 20 pushes in flight at most, 20 a second: with 1 s handlers about 20 are in flight at any time.
    await bind(db.pool, { groupId: "g-stuck", topic: "stuck", messageType: "*", bindType: BindType.Fanout });
    await bind(db.pool, {
      groupId: "g-drain",
      topic: "drain",
      messageType: "*",
      bindType: BindType.Fanout,
      watermark: 20,
    });
  });
  afterAll(async () => {
    for (const b of brokers) if (b.child.exitCode === null) await b.stop();
    await db?.drop();
  });

  it("SIGTERM waits for the pushes in flight: nothing is handled twice across the restart", async () => {
    const port = await freePort();
    const start = async () => {
      const b = await startBrokerProcess(["--db", db.url, "--recieve-permits-per-second", "0"], { port });
      brokers.push(b);
      return b;
    };
    const first = await start();
    const handled = new Map<string, number>();
    const consumer = await createConsumer({
      registry: `127.0.0.1:${port}`,
      groupId: "g-drain",
      bindings: [],
      concurrency: 20,
      handler: async (m) => {
        handled.set(m.messageId, (handled.get(m.messageId) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 1_000));
        return true;
      },
    });
    const producer = await createProducer({
      registry: `127.0.0.1:${port}`,
      groupId: "p-drain",
      topics: ["drain"],
    });
    const ids: string[] = [];
    for (let i = 0; i < 40; i++)
      ids.push((await producer.send({ topic: "drain", messageType: "m", body: `m${i}` })).messageId);
    await producer.close();
    await waitFor(() => handled.size >= 10, 15_000, "10 messages being handled");
    expect(await first.stop()).toBe(0);
    const drained = first.logs.find((l) => l.msg === "waited for the answers of pushes in flight");
    expect(drained).toBeDefined();
    expect(drained!.unanswered).toBe(0);
    expect(Number(drained!.inFlight)).toBeGreaterThan(0);
    await start();
    await waitFor(() => ids.every((id) => handled.has(id)), 30_000, "all 40 handled");
    // A redelivery would come within the restart's claim (and its 5 s delivery timeout).
    await new Promise((r) => setTimeout(r, 2_000));
    await consumer.close();
    const twice = [...handled].filter(([, n]) => n > 1);
    // Before: the ~20 in flight at the SIGTERM, handled again after the restart.
    expect(twice).toEqual([]);
  });

  it("pushes still unanswered when the wait ends are recorded as failed pushes, not released without a trace", async () => {
    const broker = await startBrokerProcess([
      "--db",
      db.url,
      "--delivery-seconds",
      "2",
      "--recieve-permits-per-second",
      "0",
    ]);
    brokers.push(broker);
    const consumer = await createConsumer({
      registry: `127.0.0.1:${broker.port}`,
      groupId: "g-stuck",
      bindings: [],
      closeTimeoutMs: 500,
      handler: () => new Promise<boolean>(() => undefined),
    });
    const producer = await createProducer({
      registry: `127.0.0.1:${broker.port}`,
      groupId: "p-stuck",
      topics: ["stuck"],
    });
    const { messageId } = await producer.send({ topic: "stuck", messageType: "m", body: "never answered" });
    await producer.close();
    await waitFor(() => consumer.active === 1, 15_000, "the push to reach the handler");
    expect(await broker.stop()).toBe(0);
    await consumer.close();
    const events =
      (await messageHistory(db.pool, messageId))?.events.filter((e) => e.groupId === "g-stuck") ?? [];
    // Before: no row at all for this push (only `received`), and its attempt not counted.
    expect(events.map((e) => [e.kind, e.attempt, e.detail])).toEqual(
      expect.arrayContaining([
        ["delivered", 1, null],
        ["nacked", 1, "node stopped before the ack"],
      ]),
    );
  });
});
