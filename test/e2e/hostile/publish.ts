/**
 * Issue 12, "No client can hurt another": what a broken or hostile producer gets, and that a
 * well-behaved producer publishing at the same moment keeps its acks (true) and its consumer
 * gets each of its messages exactly once. Live broker processes on their own test databases.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType, createBinding } from "../../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../../src/client/connection.js";
import type { Header, MessageStoreAck } from "../../../src/protocol/messages.js";
import { upsertBinding } from "../../../src/store/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../../support/broker-process.js";
import { type RecordingConsumer, recordingConsumer, waitFor } from "../../support/consumers.js";
import { alterMessagesTable, createTestDatabase, type TestDatabase } from "../../support/db.js";

const TOPIC = "h";
const FLAGS = [
  "--recieve-permits-per-second",
  "0",
  "--recover-seconds",
  "1",
  "--tx-check-seconds",
  "600",
  "--tx-check-max-seconds",
  "600",
];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const bind = (db: TestDatabase, groupId: string) =>
  upsertBinding(
    db.pool,
    createBinding({
      groupId,
      topic: TOPIC,
      messageType: "*",
      bindType: BindType.Fanout,
      watermark: 6000,
      persistent: true,
    }),
    "cli",
    new Date(),
  );

/** Publish `n` good messages of `groupId` at once; every ack must be true. */
async function goodTraffic(conn: KiteqConnection, groupId: string, n: number): Promise<string[]> {
  const headers = Array.from({ length: n }, (_, i) =>
    buildHeader({ topic: TOPIC, messageType: "pay", groupId, properties: [{ key: "i", value: `${i}` }] }),
  );
  const acks = await Promise.all(headers.map((h, i) => conn.publish(h, `good ${i}`)));
  const refused = acks.filter((a) => !a.status);
  expect(refused, "the well-behaved producer's acks").toEqual([]);
  return headers.map((h) => h.messageId);
}

/** Wait until `consumer` got every id of `ids`, then check each arrived exactly once and `never` did not. */
async function deliveredExactlyOnce(consumer: RecordingConsumer, ids: string[], never: string[] = []) {
  const want = new Set(ids);
  await waitFor(
    () => consumer.ids().filter((id) => want.has(id)).length >= ids.length,
    30_000,
    `${ids.length} deliveries`,
  );
  await sleep(300);
  const counts = new Map<string, number>();
  for (const id of consumer.ids()) counts.set(id, (counts.get(id) ?? 0) + 1);
  expect(ids.filter((id) => counts.get(id) !== 1)).toEqual([]);
  expect(never.filter((id) => counts.has(id))).toEqual([]);
}

describe("hostile publish: validation before the batch, split after it", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  let consumer: RecordingConsumer;
  let good: KiteqConnection;
  let bad: KiteqConnection;

  beforeAll(async () => {
    db = await createTestDatabase();
    await bind(db, "c-good");
    broker = await startBrokerProcess(["--db", db.url, ...FLAGS]);
    consumer = await recordingConsumer(broker.port, "c-good");
    const connect = (groupId: string) =>
      KiteqConnection.connect({ host: broker.host, port: broker.port, groupId, heartbeatMs: 0 });
    [good, bad] = await Promise.all([connect("p-good"), connect("p-bad")]);
  });
  afterAll(async () => {
    for (const c of [good, bad, consumer?.conn]) c?.close();
    if (broker) expect(await broker.stop()).toBe(0);
    await db?.drop();
  });

  it("a NUL in a property beside 999 good messages of another producer: refused naming the field; the 999 acked true and delivered once", async () => {
    const poisoned = buildHeader({
      topic: TOPIC,
      messageType: "pay",
      groupId: "p-bad",
      properties: [{ key: "trace", value: "abc\u0000def" }],
    });
    const [ids, ack] = await Promise.all([goodTraffic(good, "p-good", 999), bad.publish(poisoned, "x")]);
    expect(ack).toMatchObject({ messageId: poisoned.messageId, status: false });
    expect(ack.feedback).toBe('invalid properties["trace"].value: contains a NUL byte');
    await deliveredExactlyOnce(consumer, ids, [poisoned.messageId]);
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM messages WHERE message_id = $1", [
      poisoned.messageId,
    ]);
    expect(rows[0].n).toBe(0);
  });

  const nowSec = () => Math.floor(Date.now() / 1000);
  const cases: [string, () => Partial<Header>, RegExp][] = [
    ["a NUL in the topic", () => ({ topic: "h\u0000" }), /^invalid topic: contains a NUL byte$/],
    [
      "a NUL in the messageType",
      () => ({ messageType: "pay\u0000" }),
      /^invalid messageType: contains a NUL/,
    ],
    ["a NUL in the groupId", () => ({ groupId: "p-bad\u0000" }), /^invalid groupId: contains a NUL byte$/],
    [
      "a NUL in a property key",
      () => ({ properties: [{ key: "k\u0000", value: "v" }] }),
      /properties\[0\]\.key/,
    ],
    ["a 1 MiB topic", () => ({ topic: "t".repeat(1 << 20) }), /^invalid topic: 1048576 bytes, at most 255/],
    ["a 256-byte messageType", () => ({ messageType: "m".repeat(256) }), /^invalid messageType: 256 bytes/],
    [
      "a 1 MiB property value",
      () => ({ properties: [{ key: "big", value: "v".repeat(1 << 20) }] }),
      /^invalid properties: \d+ bytes of keys and values, at most 65536 allowed$/,
    ],
    [
      "65 properties",
      () => ({ properties: Array.from({ length: 65 }, (_, i) => ({ key: `k${i}`, value: "v" })) }),
      /^invalid properties: 65 properties, at most 64 allowed$/,
    ],
    [
      "a createTime past Date's range",
      () => ({ createTime: 8.64e12 + 1 }),
      /^invalid createTime 8640000000001/,
    ],
    [
      "a createTime in milliseconds",
      () => ({ createTime: Date.now() }),
      /^invalid createTime \d+: more than/,
    ],
    ["a negative createTime", () => ({ createTime: -5 }), /^invalid createTime -5/],
    ["an expiredTime in the past", () => ({ expiredTime: nowSec() - 60 }), /^expired message/],
  ];

  it.each(cases)(
    "%s: refused naming the field, the other producer unaffected",
    async (_what, over, reason) => {
      const header = { ...buildHeader({ topic: TOPIC, messageType: "pay", groupId: "p-bad" }), ...over() };
      const [ids, ack] = await Promise.all([goodTraffic(good, "p-good", 50), bad.publish(header, "x")]);
      expect(ack.status).toBe(false);
      expect(ack.feedback).toMatch(reason);
      await deliveredExactlyOnce(consumer, ids, [header.messageId]);
      // The bad connection stays usable: a refusal costs the request, not the connection.
      const fine = await bad.publish(buildHeader({ topic: TOPIC, messageType: "ok", groupId: "p-bad" }), "y");
      expect(fine.status).toBe(true);
    },
  );

  it("a message that passes validation but fails in PostgreSQL (SQLSTATE 22023): only it is refused, its batch-mates are stored and delivered once", async () => {
    await db.pool.query(`CREATE FUNCTION hostile_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.message_type = 'poison' THEN
          RAISE EXCEPTION 'value refused by a check' USING ERRCODE = '22023';
        END IF;
        RETURN NEW;
      END $$`);
    await alterMessagesTable(
      db.pool,
      "CREATE TRIGGER hostile_poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION hostile_poison()",
    );
    try {
      const poison = Array.from({ length: 3 }, () =>
        buildHeader({ topic: TOPIC, messageType: "poison", groupId: "p-bad" }),
      );
      const [ids, ...acks] = await Promise.all([
        goodTraffic(good, "p-good", 999),
        ...poison.map((h) => bad.publish(h, "x")),
      ]);
      for (const ack of acks as MessageStoreAck[]) {
        expect(ack.status).toBe(false);
        expect(ack.feedback).toBe("store failed: value refused by a check (SQLSTATE 22023)");
      }
      await deliveredExactlyOnce(
        consumer,
        ids as string[],
        poison.map((h) => h.messageId),
      );
      expect(broker.logs.some((l) => String(l.msg).startsWith("publish batch failed on its data"))).toBe(
        true,
      );
    } finally {
      await alterMessagesTable(db.pool, "DROP TRIGGER hostile_poison ON messages");
    }
  });

  it("a database error that is not the data's is not split, and is logged a few times, not once per message", async () => {
    await db.pool.query(`CREATE FUNCTION hostile_down() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.message_type = 'down' THEN RAISE EXCEPTION 'storage unavailable' USING ERRCODE = 'XX000'; END IF;
        RETURN NEW;
      END $$`);
    await alterMessagesTable(
      db.pool,
      "CREATE TRIGGER hostile_down BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION hostile_down()",
    );
    const before = broker.logs.length;
    try {
      const acks = await Promise.all(
        Array.from({ length: 500 }, () =>
          bad.publish(buildHeader({ topic: TOPIC, messageType: "down", groupId: "p-bad" }), "x"),
        ),
      );
      expect(
        acks.every((a) => !a.status && a.feedback === "store failed: storage unavailable (SQLSTATE XX000)"),
      ).toBe(true);
    } finally {
      await alterMessagesTable(db.pool, "DROP TRIGGER hostile_down ON messages");
    }
    const lines = broker.logs.slice(before);
    expect(lines.filter((l) => l.msg === "publish not stored").length).toBeLessThanOrEqual(5);
    expect(lines.some((l) => String(l.msg).startsWith("publish batch failed on its data"))).toBe(false);
    // And the broker is fine afterwards, for everyone.
    const ids = await goodTraffic(good, "p-good", 20);
    await deliveredExactlyOnce(consumer, ids);
  });
});

describe("hostile publish: with secrets, a session acts only as its own group", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  let consumer: RecordingConsumer;
  let p1: KiteqConnection;
  let p2: KiteqConnection;
  const SECRETS = "p1=secret-one,p2=secret-two,c1=secret-c";

  beforeAll(async () => {
    db = await createTestDatabase();
    await bind(db, "c1");
    broker = await startBrokerProcess(["--db", db.url, ...FLAGS], { env: { KITEQ_SECRETS: SECRETS } });
    const conn = await KiteqConnection.connect({
      host: broker.host,
      port: broker.port,
      groupId: "c1",
      secretKey: "secret-c",
      heartbeatMs: 0,
    });
    const received: RecordingConsumer["received"] = [];
    conn.onMessage((m) => {
      received.push(m);
      return true;
    });
    consumer = { conn, received, ids: () => received.map((m) => m.header.messageId) };
    [p1, p2] = await Promise.all([connect("p1", "secret-one"), connect("p2", "secret-two")]);
  });
  afterAll(async () => {
    for (const c of [p1, p2, consumer?.conn]) c?.close();
    if (broker) expect(await broker.stop()).toBe(0);
    await db?.drop();
  });

  const connect = (groupId: string, secretKey: string) =>
    KiteqConnection.connect({ host: broker.host, port: broker.port, groupId, secretKey, heartbeatMs: 0 });

  it("gives one refusal text for an unknown group and for a wrong secret", async () => {
    const refusal = async (groupId: string, secret: string) => {
      try {
        await connect(groupId, secret);
      } catch (err) {
        return err as Error & { code?: string };
      }
      throw new Error("handshake accepted");
    };
    const wrong = await refusal("p1", "secret-two");
    const unknown = await refusal("nobody", "secret-one");
    const empty = await refusal("p1", "");
    expect(wrong.code).toBe("KQ_AUTH_REFUSED");
    expect(wrong.message).toBe("handshake refused: authentication failed: unknown group or wrong secret");
    expect(unknown.message).toBe(wrong.message);
    expect(empty.message).toBe(wrong.message);
  });

  it("refuses a publish whose groupId is another group (2PC too); the other group's traffic is unaffected", async () => {
    const impersonated = buildHeader({ topic: TOPIC, messageType: "pay", groupId: "p2" });
    const impersonatedTx = buildHeader({ topic: TOPIC, messageType: "pay", groupId: "p2", commit: false });
    const [ids, ack, txAck] = await Promise.all([
      goodTraffic(p2, "p2", 200),
      p1.publish(impersonated, "x"),
      p1.publish(impersonatedTx, "x"),
    ]);
    for (const a of [ack, txAck]) {
      expect(a.status).toBe(false);
      expect(a.feedback).toBe(
        'invalid groupId "p2": this connection authenticated as group "p1" and may publish only as that group',
      );
    }
    await deliveredExactlyOnce(consumer, ids, [impersonated.messageId, impersonatedTx.messageId]);
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM messages WHERE message_id = ANY($1)",
      [[impersonated.messageId, impersonatedTx.messageId]],
    );
    expect(rows[0].n).toBe(0);
    // Its own group is fine.
    expect(
      (await p1.publish(buildHeader({ topic: TOPIC, messageType: "pay", groupId: "p1" }), "y")).status,
    ).toBe(true);
  });

  it("applies a TX_ACK only from a session of the publishing group", async () => {
    const h = buildHeader({ topic: TOPIC, messageType: "order", groupId: "p1", commit: false });
    expect((await p1.publish(h, "tx")).status).toBe(true);
    // p2 tries to commit (and then roll back) p1's message: nothing happens.
    p2.sendTxAck(h, 1, "not mine");
    p2.sendTxAck(h, 2, "not mine");
    const ids = await goodTraffic(p2, "p2", 50);
    await deliveredExactlyOnce(consumer, ids, [h.messageId]);
    // The refusal is logged when the TX_ACKs' batch is written, apart from the publishes: a broker
    // short of CPU may log it after the good traffic was delivered.
    const refusal = () =>
      broker.logs.some((l) => String(l.msg).startsWith("TX_ACK for a message another group published"));
    await waitFor(refusal, 15_000, "the refusal logged");
    await sleep(500);
    expect(consumer.ids()).not.toContain(h.messageId);
    const pending = await db.pool.query(
      "SELECT count(*)::int AS n FROM pending_transactions WHERE message_id = $1",
      [h.messageId],
    );
    expect(pending.rows[0].n).toBe(1);
    expect(refusal()).toBe(true);
    // The publishing group's commit is applied: delivered once.
    p1.sendTxAck(h, 1, "mine");
    await deliveredExactlyOnce(consumer, [h.messageId]);
  });
});
