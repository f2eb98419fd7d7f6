/**
 * Issue 12: one client's bad message costs only its own publish. The Publisher against a real
 * PostgreSQL: a batch that fails on one message's data is split until only that message is
 * refused; a database that cannot be reached is not split (one statement per batch, and one
 * rate-limited log). A TX_ACK with `fromGroup` decides only messages of that group.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHeader } from "../../src/client/connection.js";
import type { BytesMessage } from "../../src/protocol/messages.js";
import { Publisher, type PublishSession, type PublishWriter } from "../../src/publish/publisher.js";
import { createPool, ensurePartitions } from "../../src/store/db.js";
import { insertPublishBatch, type PublishRecord } from "../../src/store/messages.js";
import { applyTxAnswers } from "../../src/store/transactions.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

interface Ack {
  messageId: string;
  status: boolean;
  feedback: string;
}

/** A producer connection as the Publisher sees it, recording its acks. */
function fakeSession(id: string, groupId: string, log = pino({ level: "silent" })) {
  const acks: Ack[] = [];
  const session: PublishSession = {
    id,
    log,
    groupId,
    sendStoreAck: (_opaque, messageId, status, feedback) => acks.push({ messageId, status, feedback }),
  };
  return { session, acks };
}

function capturingLog() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "info" }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

const hooks = {
  servesTopic: () => true,
  admit: () => true,
  planDeliveries: () => [],
  deliverFly: () => undefined,
  afterWrite: () => undefined,
};

const message = (groupId: string, messageType: string): BytesMessage => ({
  header: buildHeader({ topic: "trade", messageType, groupId }),
  body: Buffer.from("x"),
});

const writeTo =
  (pool: Parameters<typeof insertPublishBatch>[0], calls: PublishRecord[][]): PublishWriter =>
  (records) => {
    calls.push(records);
    // The record of messageType "poison" reaches PostgreSQL with a NUL in its topic (as one
    // that slipped past validation would): a real SQLSTATE 22021 that fails its statement.
    const sent = records.map((r) => (r.messageType === "poison" ? { ...r, topic: "tra\u0000de" } : r));
    const now = new Date();
    return insertPublishBatch(pool, sent, { now, nodeId: "n1", leaseUntil: now, firstTxCheckAt: now });
  };

const until = async (cond: () => boolean) => {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("publish: a batch that fails on one message's data", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
  });
  afterAll(() => db?.drop());

  it("refuses only the bad message; the 999 others in its batch are stored and acked true", async () => {
    const calls: PublishRecord[][] = [];
    const { log, lines } = capturingLog();
    const publisher = new Publisher(hooks, writeTo(db.pool, calls), { maxBatch: 1000, concurrency: 1 }, log);
    const good = fakeSession("c1", "good");
    const bad = fakeSession("c2", "bad");
    // Same turn of the event loop: one batch of 1,000, the poison in the middle.
    for (let i = 0; i < 999; i++) {
      if (i === 400) publisher.publish(bad.session, 1, message("bad", "poison"), false);
      publisher.publish(good.session, i, message("good", "pay"), false);
    }
    await until(() => good.acks.length === 999 && bad.acks.length === 1);
    await publisher.drain();
    expect(calls[0]).toHaveLength(1000);
    expect(good.acks.every((a) => a.status && a.feedback === "stored")).toBe(true);
    expect(bad.acks[0]!.status).toBe(false);
    expect(bad.acks[0]!.feedback).toMatch(/^store failed: .* \(SQLSTATE 22021\)$/);
    expect(publisher.splits).toBe(10);
    // At most 2·log2(1000) statements beyond the first.
    expect(calls.length).toBeLessThanOrEqual(21);
    const { rows } = await db.pool.query<{ group_id: string; n: number }>(
      "SELECT group_id, count(*)::int AS n FROM messages GROUP BY group_id",
    );
    expect(rows).toEqual([{ group_id: "good", n: 999 }]);
    const stored = await db.pool.query("SELECT count(DISTINCT message_id)::int AS n FROM messages");
    expect(stored.rows[0].n).toBe(999);
    expect(publisher.counters).toMatchObject({ accepted: 999, failed: 1 });
    expect(lines.filter((l) => l.msg === "publish not stored")).toHaveLength(1);
  });

  it("the fast path hears every record once with its outcome; one that throws costs no publish its answer", async () => {
    const calls: PublishRecord[][] = [];
    const { log, lines } = capturingLog();
    const heard: { messageType: string; stored: boolean }[][] = [];
    const throwing = {
      ...hooks,
      afterWrite: (
        records: readonly PublishRecord[],
        results: readonly ({ pk?: number } | undefined)[] | undefined,
      ) => {
        heard.push(
          records.map((r, i) => ({ messageType: r.messageType, stored: results?.[i]?.pk !== undefined })),
        );
        throw new Error("fast path bug");
      },
    };
    const publisher = new Publisher(
      throwing,
      writeTo(db.pool, calls),
      { maxBatch: 1000, concurrency: 1 },
      log,
    );
    const good = fakeSession("c1", "good2");
    const bad = fakeSession("c2", "bad2");
    for (let i = 0; i < 9; i++) publisher.publish(good.session, i, message("good2", "pay"), false);
    publisher.publish(bad.session, 1, message("bad2", "poison"), false);
    await until(() => good.acks.length === 9 && bad.acks.length === 1);
    await publisher.drain();
    // Once, for the whole batch, after its split: the poison is the one record not stored.
    expect(heard).toHaveLength(1);
    expect(heard[0]).toHaveLength(10);
    expect(heard[0]!.filter((h) => !h.stored).map((h) => h.messageType)).toEqual(["poison"]);
    expect(good.acks.every((a) => a.status)).toBe(true);
    expect(bad.acks[0]!.status).toBe(false);
    const errors = lines.filter(
      (l) =>
        l.msg === "pushing a stored batch failed; its deliveries are claimed again when their lease runs out",
    );
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: "KQ_INTERNAL", batch: 10 });
  });

  it("does not split when the database cannot be reached: one attempt per batch, every message refused, a few log lines", async () => {
    // A port nobody listens on: connection refused, no SQLSTATE.
    const unreachable = createPool(db.url.replace(/:\d+\//, ":1/"), { max: 1 });
    try {
      const calls: PublishRecord[][] = [];
      const { log, lines } = capturingLog();
      const publisher = new Publisher(
        hooks,
        writeTo(unreachable, calls),
        { maxBatch: 1000, concurrency: 1 },
        log,
      );
      const p = fakeSession("c1", "good");
      for (let i = 0; i < 2000; i++) publisher.publish(p.session, i, message("good", "pay"), false);
      await until(() => p.acks.length === 2000);
      await publisher.drain();
      expect(calls.map((c) => c.length)).toEqual([1000, 1000]);
      expect(publisher.splits).toBe(0);
      expect(p.acks.every((a) => !a.status && /^store failed: /.test(a.feedback))).toBe(true);
      // 2,000 failures: the first 5 one by one, then one summary (written by drain) with the count.
      const failures = lines.filter((l) => String(l.msg).startsWith("publish not stored"));
      expect(failures).toHaveLength(6);
      expect(failures[5]).toMatchObject({ suppressed: 1995, total: 2000, code: "KQ_STORE_FAILED" });
    } finally {
      await unreachable.end();
    }
  });
});

describe("TX_ACK answers with fromGroup", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
  });
  afterAll(() => db?.drop());

  it("decide only messages published by that group", async () => {
    const now = new Date();
    const rec = publishRecord(now, [], { groupId: "p1", commit: false });
    await insertPublishBatch(db.pool, [rec], { now, nodeId: "n1", leaseUntil: now, firstTxCheckAt: now });
    const opts = { now, nodeId: "n1", leaseUntil: now, plan: () => [] };
    const answer = (fromGroup: string | undefined) => ({
      messageId: rec.messageId,
      kind: "committed" as const,
      detail: "test",
      check: null,
      fromGroup,
    });
    const [other] = await applyTxAnswers(db.pool, [answer("p2")], opts);
    expect(other).toMatchObject({ applied: false, wrongGroup: true });
    const pending = await db.pool.query("SELECT count(*)::int AS n FROM pending_transactions");
    expect(pending.rows[0].n).toBe(1);
    const [own] = await applyTxAnswers(db.pool, [answer("p1")], opts);
    expect(own).toMatchObject({ applied: true, wrongGroup: false });
    const after = await db.pool.query("SELECT count(*)::int AS n FROM pending_transactions");
    expect(after.rows[0].n).toBe(0);
  });
});
