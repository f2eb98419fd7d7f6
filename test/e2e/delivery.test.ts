import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType, createBinding } from "../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

describe("e2e: delivery over TCP", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  let producer: KiteqConnection;
  const open: KiteqConnection[] = [];

  const bind = (groupId: string, topic: string, messageType: string, bindType: number, persistent = true) =>
    upsertBinding(
      db.pool,
      createBinding({
        groupId,
        topic,
        messageType,
        bindType: bindType as 0 | 1 | 2,
        watermark: 1000,
        persistent,
      }),
      "cli",
      new Date(),
    );
  const publish = async (
    topic: string,
    messageType: string,
    extra: Parameters<typeof buildHeader>[0] extends infer H ? Partial<H & object> : never = {},
  ) => {
    const ack = await producer.publish(
      buildHeader({ topic, messageType, groupId: "prod", ...extra }),
      `m-${messageType}`,
    );
    expect(ack.status).toBe(true);
    return ack.messageId;
  };
  const consumer = async (
    ...args: Parameters<typeof recordingConsumer> extends [number, ...infer R] ? R : never
  ) => {
    const c = await recordingConsumer(broker.port, ...args);
    open.push(c.conn);
    return c;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    await bind("g-direct", "trade", "pay-succ", BindType.Direct);
    await bind("g-regx", "trade", "^pay-.*", BindType.Regx);
    await bind("g-fanout", "trade", "*", BindType.Fanout);
    await bind("g-share", "share", "s", BindType.Direct);
    await bind("g-false", "nack", "n", BindType.Direct);
    await bind("g-silent", "silent", "s", BindType.Direct);
    await bind("g-dead", "dead", "d", BindType.Direct);
    await bind("g-exp", "exp", "e", BindType.Direct);
    await bind("g-late", "late", "l", BindType.Direct, true);
    await bind("g-np", "late", "l", BindType.Direct, false);
    await bind("g-slowack", "slowack", "s", BindType.Direct);
    broker = await startBrokerProcess([
      "--db",
      db.url,
      "--delivery-seconds",
      "1",
      "--recover-seconds",
      "1",
      "--recieve-permits-per-second",
      "0",
    ]);
    producer = await KiteqConnection.connect({
      host: broker.host,
      port: broker.port,
      groupId: "prod",
      heartbeatMs: 0,
    });
    open.push(producer);
  });
  afterAll(async () => {
    for (const c of open) c.close();
    expect(await broker.stop()).toBe(0);
    await db.drop();
  });

  it("Direct, Regx and Fanout groups each get exactly the messages they match", async () => {
    const direct = await consumer("g-direct");
    const regx = await consumer("g-regx");
    const fanout = await consumer("g-fanout");
    const paySucc = await publish("trade", "pay-succ");
    const payFail = await publish("trade", "pay-fail");
    const other = await publish("trade", "refund");
    await waitFor(
      () => fanout.received.length === 3 && regx.received.length === 2 && direct.received.length === 1,
      10_000,
      "deliveries",
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(direct.ids()).toEqual([paySucc]);
    expect(regx.ids().sort()).toEqual([paySucc, payFail].sort());
    expect(fanout.ids().sort()).toEqual([paySucc, payFail, other].sort());
    expect(direct.received[0]!.body).toBe("m-pay-succ");
  });

  it("two consumers of one group share the messages, each message once per group", async () => {
    const a = await consumer("g-share");
    const b = await consumer("g-share");
    const ids = await Promise.all(Array.from({ length: 200 }, () => publish("share", "s")));
    await waitFor(() => a.received.length + b.received.length >= 200, 10_000, "200 deliveries");
    await new Promise((r) => setTimeout(r, 300));
    const all = [...a.ids(), ...b.ids()];
    expect(all.sort()).toEqual([...ids].sort());
    expect(a.received.length).toBeGreaterThan(20);
    expect(b.received.length).toBeGreaterThan(20);
  });

  it("a consumer that answers false gets the message again (attempts 1-3 at once)", async () => {
    const c = await consumer("g-false", (_m, n) => n >= 3);
    const id = await publish("nack", "n");
    await waitFor(() => c.received.length >= 3, 10_000, "3 attempts");
    await new Promise((r) => setTimeout(r, 300));
    expect(c.ids()).toEqual([id, id, id]);
    await waitFor(async () => (await kinds(id, "g-false")).includes("acked"), 5000, "acked event");
    expect(await kinds(id, "g-false")).toEqual([
      "delivered",
      "nacked",
      "delivered",
      "nacked",
      "delivered",
      "acked",
    ]);
  });

  it("a consumer that never answers gets the message again after the delivery timeout", async () => {
    const started = Date.now();
    const c = await consumer("g-silent", (_m, n) => (n === 1 ? "ignore" : true));
    const id = await publish("silent", "s");
    await waitFor(() => c.received.length >= 2, 10_000, "redelivery after timeout");
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(c.ids()).toEqual([id, id]);
    await waitFor(async () => (await kinds(id, "g-silent")).includes("acked"), 5000, "acked event");
    const rows = await history(id, "g-silent");
    expect(rows.find((r) => r.kind === "nacked")?.detail).toMatch(/no ack within 1000 ms/);
  });

  it("an ack that arrives after the push timed out still ends the delivery", async () => {
    const c = await consumer("g-slowack", () => "ignore");
    c.conn.onMessage((m) => {
      c.received.push(m);
      // The first push is answered true, but only after the 1 s delivery timeout; later pushes
      // are never answered. Without honouring the late ack, pushes would go on to the limit.
      return c.received.length === 1
        ? new Promise<boolean>((r) => setTimeout(() => r(true), 1500))
        : new Promise<boolean>(() => undefined);
    });
    const id = await publish("slowack", "s");
    await waitFor(async () => (await kinds(id, "g-slowack")).includes("acked"), 10_000, "late ack recorded");
    await new Promise((r) => setTimeout(r, 2500));
    expect(c.ids()).toEqual([id, id]);
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM deliveries d JOIN messages m ON m.id = d.message_pk WHERE m.message_id = $1",
      [id],
    );
    expect(rows[0].n).toBe(0);
  });

  it("deliverLimit 3 ends in dead_lettered, and a re-drive delivers it again", async () => {
    let accept = false;
    const c = await consumer("g-dead", () => accept);
    const id = await publish("dead", "d", { deliverLimit: 3 });
    await waitFor(async () => (await kinds(id, "g-dead")).includes("dead_lettered"), 10_000, "dead letter");
    expect(c.received.length).toBe(3);
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM deliveries d JOIN messages m ON m.id = d.message_pk WHERE m.message_id = $1",
      [id],
    );
    expect(rows[0].n).toBe(0);
    accept = true;
    const { redriveDelivery } = await import("../../src/store/deliveries.js");
    const now = new Date();
    expect(
      await redriveDelivery(db.pool, {
        messageId: id,
        groupId: "g-dead",
        now,
        expiresAt: new Date(now.getTime() + 60_000),
        nodeId: "test",
        reason: "test",
      }),
    ).toBe(true);
    await waitFor(() => c.received.length === 4, 10_000, "re-driven delivery");
    await waitFor(async () => (await kinds(id, "g-dead")).at(-1) === "acked", 5000, "acked after re-drive");
    expect((await kinds(id, "g-dead")).slice(-3)).toEqual(["redriven", "delivered", "acked"]);
  });

  it("an expired message is never pushed", async () => {
    const id = await publish("exp", "e", { expiredTime: Math.floor(Date.now() / 1000) + 1 });
    await waitFor(async () => (await kinds(id, "g-exp")).includes("expired"), 10_000, "expired event");
    const c = await consumer("g-exp");
    await new Promise((r) => setTimeout(r, 1500));
    expect(c.received).toEqual([]);
  });

  it("a persistent group that connects late receives its backlog; a non-persistent one does not", async () => {
    const ids = await Promise.all(Array.from({ length: 50 }, () => publish("late", "l")));
    const persistent = await consumer("g-late");
    const nonPersistent = await consumer("g-np");
    await waitFor(() => persistent.received.length === 50, 10_000, "backlog");
    expect(persistent.ids().sort()).toEqual([...ids].sort());
    await new Promise((r) => setTimeout(r, 500));
    expect(nonPersistent.received).toEqual([]);
    // Once connected, the non-persistent group receives new messages.
    const live = await publish("late", "l");
    await waitFor(() => nonPersistent.received.length === 1, 10_000, "live message");
    expect(nonPersistent.ids()).toEqual([live]);
  });

  it("history: one query gives received -> delivered -> acked per group, in order", async () => {
    const id = await publish("trade", "pay-succ");
    await waitFor(
      async () => (await history(id)).filter((r) => r.kind === "acked").length === 3,
      10_000,
      "acks",
    );
    const rows = await history(id);
    expect(rows[0]).toMatchObject({ kind: "received", group_id: null });
    for (const g of ["g-direct", "g-fanout", "g-regx"]) {
      expect(rows.filter((r) => r.group_id === g).map((r) => r.kind)).toEqual(["delivered", "acked"]);
    }
  });

  async function history(messageId: string, groupId?: string) {
    // The README's history query.
    const { rows } = await db.pool.query<{ kind: string; group_id: string | null; detail: string | null }>(
      `SELECT x.at, x.kind, e.group_id, e.attempt, e.node_id, x.detail
         FROM messages m JOIN message_events e ON e.message_pk = m.id
         CROSS JOIN LATERAL (SELECT e.at, e.kind, e.detail UNION ALL
                             SELECT e.delivered_at, 'delivered', NULL WHERE e.delivered_at IS NOT NULL) x
        WHERE m.message_id = $1 AND ($2::text IS NULL OR e.group_id = $2 OR e.group_id IS NULL)
        ORDER BY x.at, x.kind`,
      [messageId, groupId ?? null],
    );
    return rows;
  }
  async function kinds(messageId: string, groupId: string) {
    return (await history(messageId, groupId)).filter((r) => r.group_id === groupId).map((r) => r.kind);
  }
});
