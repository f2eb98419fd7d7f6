import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensurePartitions } from "../../src/store/db.js";
import { EVENT_KINDS } from "../../src/store/event-kinds.js";
import { insertPublishBatch, type PublishRecord } from "../../src/store/messages.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const now = new Date("2026-11-26T10:00:00.000Z");
const opts = { now, nodeId: "n1", leaseUntil: new Date(now.getTime() + 30_000), firstTxCheckAt: now };

function record(over: Partial<PublishRecord> = {}): PublishRecord {
  return {
    messageId: randomBytes(16).toString("hex"),
    topic: "trade",
    messageType: "pay-succ",
    groupId: "p1",
    commit: true,
    expiresAt: new Date(now.getTime() + 3600_000),
    deliverLimit: 100,
    createdAt: now,
    properties: [{ key: "k", value: "v" }],
    snappy: false,
    bodyIsString: false,
    body: Buffer.from([0, 1, 2, 255]),
    deliveries: [],
    ...over,
  };
}

describe("store: publish batch", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, now);
  });
  afterAll(async () => db.drop());

  it("the database enum agrees with EVENT_KINDS", async () => {
    const { rows } = await db.pool.query<{ v: string }>(
      "SELECT unnest(enum_range(NULL::message_event_kind))::text AS v",
    );
    expect(rows.map((r) => r.v).sort()).toEqual([...EVENT_KINDS].sort());
  });

  it("migrations from empty created partitioned history tables with daily partitions", async () => {
    const { rows } = await db.pool.query<{ relname: string }>(
      `SELECT c.relname FROM pg_class c WHERE c.relkind = 'p' ORDER BY 1`,
    );
    expect(rows.map((r) => r.relname)).toEqual(["message_events", "messages"]);
    const parts = await db.pool.query("SELECT 1 FROM pg_class WHERE relname = 'messages_p20261126'");
    expect(parts.rowCount).toBe(1);
  });

  it("writes exactly one messages row and one history row per message", async () => {
    const recs = Array.from({ length: 500 }, (_, i) => record({ commit: i % 5 !== 0 }));
    const results = await insertPublishBatch(db.pool, recs, opts);
    expect(results.every((r) => !r.duplicate && r.pk !== undefined)).toBe(true);
    const ids = recs.map((r) => r.messageId);
    const m = await db.pool.query(
      "SELECT message_id, body, properties FROM messages WHERE message_id = ANY($1)",
      [ids],
    );
    expect(m.rowCount).toBe(500);
    expect(Buffer.compare(m.rows[0].body, Buffer.from([0, 1, 2, 255]))).toBe(0);
    expect(m.rows[0].properties).toEqual([{ key: "k", value: "v" }]);
    const ev = await db.pool.query<{ kind: string; n: number }>(
      `SELECT e.kind, count(*)::int AS n FROM message_events e JOIN messages m ON m.id = e.message_pk
        WHERE m.message_id = ANY($1) GROUP BY e.kind ORDER BY e.kind`,
      [ids],
    );
    expect(ev.rows).toEqual([
      { kind: "received", n: 400 },
      { kind: "uncommitted", n: 100 },
    ]);
    const tx = await db.pool.query("SELECT count(*)::int AS n FROM pending_transactions");
    expect(tx.rows[0].n).toBe(100);
  });

  it("is idempotent by messageId: a re-sent message is stored once", async () => {
    const r = record();
    const first = await insertPublishBatch(db.pool, [r, r], opts);
    expect(first.map((x) => x.duplicate)).toEqual([false, true]);
    const again = await insertPublishBatch(db.pool, [r], opts);
    expect(again[0]!.duplicate).toBe(true);
    const m = await db.pool.query("SELECT count(*)::int AS n FROM messages WHERE message_id = $1", [
      r.messageId,
    ]);
    expect(m.rows[0].n).toBe(1);
  });

  it("creates deliveries for committed messages only, pre-claimed ones with a lease", async () => {
    const c = record({
      deliveries: [
        { groupId: "g1", claimedBy: null },
        { groupId: "g2", claimedBy: "n1" },
      ],
    });
    const u = record({ commit: false, deliveries: [{ groupId: "g1", claimedBy: null }] });
    await insertPublishBatch(db.pool, [c, u], opts);
    const { rows } = await db.pool.query(
      `SELECT d.group_id, d.claimed_by, d.claim_epoch, d.lease_until FROM deliveries d
         JOIN messages m ON m.id = d.message_pk WHERE m.message_id = ANY($1) ORDER BY d.group_id`,
      [[c.messageId, u.messageId]],
    );
    expect(rows).toEqual([
      { group_id: "g1", claimed_by: null, claim_epoch: 0, lease_until: null },
      { group_id: "g2", claimed_by: "n1", claim_epoch: 1, lease_until: opts.leaseUntil },
    ]);
  });

  it("a failed transaction stores nothing and throws", async () => {
    await db.pool.query(`CREATE FUNCTION fail_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.topic = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$`);
    await db.pool.query(
      "CREATE TRIGGER poison BEFORE INSERT ON messages_p20261126 FOR EACH ROW EXECUTE FUNCTION fail_poison()",
    );
    const good = record();
    await expect(insertPublishBatch(db.pool, [good, record({ topic: "poison" })], opts)).rejects.toThrow(
      /poisoned/,
    );
    const m = await db.pool.query("SELECT count(*)::int AS n FROM messages WHERE message_id = $1", [
      good.messageId,
    ]);
    expect(m.rows[0].n).toBe(0);
  });
});
