/**
 * Issue 11 point 4: the history is partitioned by the broker's receive time; a messageId is stored
 * once whatever its createTime; retention drops exactly the days it names; a delivery whose
 * message is gone ends `expired`; migration 0004 carries a 0003 database over.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import {
  createPool,
  dropPartitionsBefore,
  ensurePartitions,
  MIGRATIONS_DIR,
  runMigrations,
} from "../../src/store/db.js";
import { claimDueDeliveries, countOwedDeliveries } from "../../src/store/deliveries.js";
import { messageHistory } from "../../src/store/history.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const DAY = 86_400_000;
const now = new Date("2026-11-26T10:00:00.000Z");
const opts = { now, nodeId: "n1", leaseUntil: new Date(now.getTime() + 30_000), firstTxCheckAt: now };

async function partitionOf(
  db: TestDatabase,
  table: string,
  where: string,
  values: unknown[],
): Promise<string> {
  const { rows } = await db.pool.query<{ p: string }>(
    `SELECT tableoid::regclass::text AS p FROM ${table} WHERE ${where}`,
    values,
  );
  return rows[0]!.p;
}

describe("store: history by receive time", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, now);
  });
  afterAll(async () => db.drop());

  it("a createTime 10 days ahead or 40 days back is stored in the day it was received", async () => {
    const expiresAt = new Date(now.getTime() + DAY);
    const future = publishRecord(new Date(now.getTime() + 10 * DAY), ["g"], { expiresAt });
    const past = publishRecord(new Date(now.getTime() - 40 * DAY), ["g"], { expiresAt });
    const results = await insertPublishBatch(db.pool, [future, past], opts);
    expect(results.map((r) => r.duplicate)).toEqual([false, false]);
    for (const r of [future, past]) {
      expect(await partitionOf(db, "messages", "message_id = $1", [r.messageId])).toBe("messages_p20261126");
    }
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE '%_default'",
    );
    expect(rows[0].n).toBe(0);
    // Both are claimable and carry the producer's createTime as data.
    const claimed = await claimDueDeliveries(db.pool, {
      groups: ["g"],
      limits: [10],
      now,
      claimer: "n1/x",
      leaseUntil: new Date(now.getTime() + 30_000),
    });
    expect(claimed.map((c) => c.createdAt.getTime()).sort()).toEqual(
      [past.createdAt.getTime(), future.createdAt.getTime()].sort(),
    );
  });

  it("the same messageId with another createTime is a duplicate: stored and owed once", async () => {
    const first = publishRecord(now, ["dup"]);
    const again = { ...first, createdAt: new Date(now.getTime() - 5 * DAY), body: Buffer.from("other") };
    const later = { ...opts, now: new Date(now.getTime() + DAY) };
    expect((await insertPublishBatch(db.pool, [first], opts))[0]!.duplicate).toBe(false);
    expect((await insertPublishBatch(db.pool, [again], opts))[0]!.duplicate).toBe(true);
    // A day later (another partition) it is still a duplicate.
    expect((await insertPublishBatch(db.pool, [again], later))[0]!.duplicate).toBe(true);
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM messages WHERE message_id = $1", [
      first.messageId,
    ]);
    expect(rows[0].n).toBe(1);
    expect((await countOwedDeliveries(db.pool)).get("dup")).toBe(1);
    const h = await messageHistory(db.pool, first.messageId);
    expect(h?.events.filter((e) => e.kind === "received")).toHaveLength(1);
  });

  it("retention drops exactly the days it names; an owed delivery of a dropped message ends expired", async () => {
    const day1 = new Date("2026-11-20T12:00:00.000Z");
    await ensurePartitions(db.pool, day1);
    const old = publishRecord(new Date(now.getTime() - 40 * DAY), ["ret"], {
      expiresAt: new Date(now.getTime() + 7 * DAY),
    });
    const kept = publishRecord(day1, ["ret2"]);
    await insertPublishBatch(db.pool, [old], { ...opts, now: new Date("2026-11-19T12:00:00.000Z") });
    await insertPublishBatch(db.pool, [kept], { ...opts, now: day1 });
    const dropped = await dropPartitionsBefore(db.pool, new Date("2026-11-20T00:00:00.000Z"));
    expect(dropped).toContain("messages_p20261119");
    expect(dropped).toContain("message_events_p20261119");
    expect(dropped).not.toContain("messages_p20261120");
    expect(await messageHistory(db.pool, old.messageId)).toBeNull();
    expect(await messageHistory(db.pool, kept.messageId)).not.toBeNull();
    // Its id is free again, and its delivery (still owed) ends expired when claimed.
    const { rows: ids } = await db.pool.query("SELECT 1 FROM message_ids WHERE message_id = $1", [
      old.messageId,
    ]);
    expect(ids).toHaveLength(0);
    const claimed = await claimDueDeliveries(db.pool, {
      groups: ["ret"],
      limits: [10],
      now,
      claimer: "n1/x",
      leaseUntil: new Date(now.getTime() + 30_000),
      nodeId: "n1",
    });
    expect(claimed).toHaveLength(0);
    const { rows } = await db.pool.query(
      "SELECT kind, detail FROM message_events WHERE group_id = 'ret' AND kind = 'expired'",
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].detail).toMatch(/no longer stored/);
    expect((await countOwedDeliveries(db.pool)).get("ret")).toBeUndefined();
  });
});

describe("migration 0004 carries a 0003 database over", () => {
  const adminUrl = inject("pgAdminUrl");
  const name = `mig_${Date.now().toString(36)}`;
  let dir: string;
  afterAll(async () => {
    const a = createPool(adminUrl, { max: 1 });
    await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await a.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it("messages move to their receive days, default partitions go, ids and owed counts are filled", async () => {
    const a = createPool(adminUrl, { max: 1 });
    await a.query(`CREATE DATABASE ${name}`);
    await a.end();
    const pool = createPool(adminUrl.replace(/\/postgres$/, `/${name}`), { max: 2 });
    try {
      // The migrations as they were before 0004.
      dir = mkdtempSync(path.resolve(".tmp", "mig-"));
      cpSync(MIGRATIONS_DIR, dir, { recursive: true });
      const journalPath = path.join(dir, "meta/_journal.json");
      const journal = JSON.parse(readFileSync(journalPath, "utf8"));
      journal.entries = journal.entries.filter((e: { idx: number }) => e.idx < 4);
      writeFileSync(journalPath, JSON.stringify(journal));
      await migrate(drizzle(pool), { migrationsFolder: dir });
      await pool.query("SELECT kiteq_ensure_partitions('2026-11-25', '2026-11-27')");
      // One message in a day partition; one with a far-future createTime in messages_default;
      // the same id twice under two createTimes (stored twice before 0004).
      await pool.query(`
        INSERT INTO messages (message_id, topic, message_type, group_id, "commit", expires_at, deliver_limit,
                              created_at, stored_at, properties, snappy, body_is_string, body)
        VALUES ('a', 't', 'm', 'p', true, '2026-12-01', 5, '2026-11-26 10:00+00', '2026-11-26 10:00+00', NULL, false, true, 'x'),
               ('b', 't', 'm', 'p', true, '2026-12-01', 5, '2027-06-01 10:00+00', '2026-11-26 11:00+00', NULL, false, true, 'y'),
               ('c', 't', 'm', 'p', true, '2026-12-01', 5, '2026-11-25 10:00+00', '2026-11-26 12:00+00', NULL, false, true, 'z1'),
               ('c', 't', 'm', 'p', true, '2026-12-01', 5, '2026-11-26 10:00+00', '2026-11-26 12:00+01', NULL, false, true, 'z2')`);
      await pool.query(`
        INSERT INTO message_events (message_pk, kind, at)
        SELECT id, 'received'::message_event_kind, stored_at FROM messages
        UNION ALL SELECT id, 'received'::message_event_kind, '2030-01-01' FROM messages WHERE message_id = 'b'`);
      await pool.query(`
        INSERT INTO deliveries (message_pk, group_id, message_created_at, topic, next_attempt_at, expires_at, deliver_limit)
        SELECT id, 'g', created_at, topic, stored_at, expires_at, deliver_limit FROM messages WHERE message_id IN ('a', 'b')`);
      await runMigrations(pool, silentLogger);

      const { rows: parts } = await pool.query<{ id: string; p: string }>(
        "SELECT message_id AS id, tableoid::regclass::text AS p FROM messages ORDER BY message_id, id",
      );
      expect(parts.map((r) => r.p)).toEqual(Array(4).fill("messages_p20261126"));
      const { rows: defaults } = await pool.query(
        "SELECT relname FROM pg_class WHERE relname LIKE '%_default'",
      );
      expect(defaults).toHaveLength(0);
      const { rows: ev } = await pool.query("SELECT count(*)::int AS n FROM message_events");
      expect(ev[0].n).toBe(5);
      const { rows: ids } = await pool.query("SELECT message_id FROM message_ids ORDER BY 1");
      expect(ids.map((r) => r.message_id)).toEqual(["a", "b", "c"]);
      const { rows: dl } = await pool.query(
        "SELECT count(*)::int AS n FROM deliveries d JOIN messages m ON m.id = d.message_pk AND m.stored_at = d.message_stored_at",
      );
      expect(dl[0].n).toBe(2);
      expect((await countOwedDeliveries(pool)).get("g")).toBe(2);
      const claimed = await claimDueDeliveries(pool, {
        groups: ["g"],
        limits: [10],
        now: new Date("2026-11-27T00:00:00Z"),
        claimer: "x/1",
        leaseUntil: new Date("2026-11-27T00:01:00Z"),
      });
      expect(claimed.map((c) => c.messageId).sort()).toEqual(["a", "b"]);
    } finally {
      await pool.end();
    }
  });
});

describe("owed counts kept by triggers", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, now);
  });
  afterAll(async () => db.drop());

  it("follow inserts, deletes and TRUNCATE of deliveries, from several connections", async () => {
    const recs = Array.from({ length: 40 }, (_, i) =>
      publishRecord(now, i % 2 === 0 ? ["oa", "ob"] : ["oa"]),
    );
    await Promise.all(
      [0, 1, 2, 3].map((k) => insertPublishBatch(db.pool, recs.slice(k * 10, k * 10 + 10), opts)),
    );
    expect(Object.fromEntries(await countOwedDeliveries(db.pool))).toEqual({ oa: 40, ob: 20 });
    await db.pool.query(
      "DELETE FROM deliveries WHERE group_id = 'ob' AND message_pk IN (SELECT message_pk FROM deliveries WHERE group_id = 'ob' LIMIT 5)",
    );
    expect(Object.fromEntries(await countOwedDeliveries(db.pool))).toEqual({ oa: 40, ob: 15 });
    await db.pool.query("TRUNCATE deliveries");
    expect(Object.fromEntries(await countOwedDeliveries(db.pool))).toEqual({});
  });
});
