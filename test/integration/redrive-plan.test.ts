/**
 * A re-drive costs what its own message has, not its group's history, with the statistics
 * autovacuum keeps: the day partitions analysed, the partitioned parents never (autovacuum does
 * not analyse those). The planner then walked the group's events backwards through
 * message_events_group_idx to find one message's last ending (165 ms a message at 44,000 events;
 * a range re-drive of 50,000 dead letters would have taken hours).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BROKER_POOL_SETTINGS, createPool, ensurePartitions } from "../../src/store/db.js";
import { REDRIVE_DELIVERIES, redriveDeliveries } from "../../src/store/deliveries.js";
import { COUNT_DEAD_LETTERS_SQL, DEAD_LETTER_PAGE_SQL } from "../../src/store/groups.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deadLetterDue } from "../support/dead-letters.js";
import { publishRecord } from "../support/records.js";

const GROUP = "g-dead";
const DEAD = 20_000;
const BATCH = 1_000;

describe("re-drive plan under autovacuum's statistics", () => {
  let db: TestDatabase;
  const ids: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
    for (let done = 0; done < DEAD; done += BATCH) {
      const now = new Date();
      const records = Array.from({ length: BATCH }, () => publishRecord(now, [GROUP], { deliverLimit: 1 }));
      for (const r of records) ids.push(r.messageId);
      await insertPublishBatch(db.pool, records, { now, nodeId: "t", leaseUntil: now, firstTxCheckAt: now });
      await deadLetterDue(db.pool, GROUP, { now, limit: BATCH });
    }
    // What autovacuum does: the day partitions analysed, the partitioned parents never.
    const { rows } = await db.pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('messages'::regclass, 'message_events'::regclass)`,
    );
    for (const { name } of rows) await db.pool.query(`ANALYZE "${name}"`);
    await db.pool.query("ANALYZE message_ids, deliveries");
  }, 240_000);
  afterAll(async () => db?.drop());

  it("a page of the group's dead letters (100, with each one's last nack) reads what it shows", async () => {
    const pool = createPool(db.url, { max: 1, settings: BROKER_POOL_SETTINGS });
    try {
      const since = new Date(Date.now() - 3600_000);
      const until = new Date(Date.now() + 1000);
      const { rows } = await pool.query({
        text: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${DEAD_LETTER_PAGE_SQL}`,
        values: [GROUP, since, until, null, null, null, null, 0, 101],
      });
      const plan = (rows[0]["QUERY PLAN"] as { Plan: Record<string, number> }[])[0]!.Plan;
      const blocks = plan["Shared Hit Blocks"]! + plan["Shared Read Blocks"]!;
      expect(plan["Actual Rows"]).toBe(101);
      // Index probes per row shown, one per day partition (about 62 buffers a row here): not a
      // walk of the group's 40,000 history rows for each (about 1,000 a row, as re-drive did).
      expect(blocks).toBeLessThan(101 * 100);
    } finally {
      await pool.end();
    }
  });

  it("re-driving the group's oldest dead letters reads a few dozen buffers each, not the group's history", async () => {
    const pool = createPool(db.url, { max: 1, settings: BROKER_POOL_SETTINGS });
    const client = await pool.connect();
    try {
      for (const n of [1, 100]) {
        await client.query("BEGIN");
        const now = new Date();
        const { rows } = await client.query({
          text: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${REDRIVE_DELIVERIES}`,
          values: [ids.slice(0, n), GROUP, now, new Date(now.getTime() + 3600_000), "t", "test"],
        });
        const plan = (rows[0]["QUERY PLAN"] as { Plan: Record<string, number> }[])[0]!.Plan;
        const blocks = plan["Shared Hit Blocks"]! + plan["Shared Read Blocks"]!;
        // Never the group's history index: a walk of it per message was 1.1 ms each at 6,000
        // events of the group with no statistics at all (a fresh store), ~1,000 buffers each here.
        expect(
          indexesOf(plan).filter((name) => /message_events.*group/.test(name)),
          `${n}`,
        ).toEqual([]);
        // It did re-drive them (deliveries written), and read few buffers (about 900 a message
        // before the LATERAL probe).
        const { rows: owed } = await client.query("SELECT 1 FROM deliveries WHERE group_id = $1", [GROUP]);
        expect(owed, `${n}`).toHaveLength(n);
        expect(plan["Actual Rows"], `${n}`).toBe(n);
        expect(blocks, `${n}`).toBeLessThan(200 * n);
        await client.query("ROLLBACK");
      }
    } finally {
      await client.query("ROLLBACK");
      client.release();
      await pool.end();
    }
  });

  it("a filtered page and the count read the group's current dead letters, not every one it ever had", async () => {
    const pool = createPool(db.url, { max: 1, settings: BROKER_POOL_SETTINGS });
    const client = await pool.connect();
    const blocksOf = async (text: string, values: unknown[]) => {
      const { rows } = await client.query({
        text: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`,
        values,
      });
      const plan = (rows[0]["QUERY PLAN"] as { Plan: Record<string, number> }[])[0]!.Plan;
      return { rows: plan["Actual Rows"]!, blocks: plan["Shared Hit Blocks"]! + plan["Shared Read Blocks"]! };
    };
    try {
      // All but the newest 100 re-driven (the last case of the file: the others need them dead).
      const now = new Date();
      for (let i = 0; i < DEAD - 100; i += BATCH) {
        const batch = ids.slice(i, Math.min(i + BATCH, DEAD - 100));
        const done = await redriveDeliveries(client, batch, {
          groupId: GROUP,
          now,
          expiresAt: new Date(now.getTime() + 3600_000),
          nodeId: "t",
          reason: "t",
        });
        expect(done.size).toBe(batch.length);
      }
      // What autovacuum does after so many deletes.
      await client.query("VACUUM dead_letters");
      const since = new Date(Date.now() - 3600_000);
      const until = new Date(Date.now() + 1000);
      const page = (error: string | null) =>
        blocksOf(DEAD_LETTER_PAGE_SQL, [GROUP, since, until, null, null, error, null, 0, 101]);
      expect((await page(null)).rows).toBe(100);
      // An error filter matching nothing walked all 20,000 dead_lettered rows with their probes
      // (about 1,000,000 buffers); now the 100 still dead.
      const none = await page("no such reason");
      expect(none.rows).toBe(0);
      expect(none.blocks).toBeLessThan(100);
      const count = await blocksOf(COUNT_DEAD_LETTERS_SQL, [[GROUP], 1000]);
      expect(count.blocks).toBeLessThan(100);
      const { rows } = await client.query({ text: COUNT_DEAD_LETTERS_SQL, values: [[GROUP], 1000] });
      expect(Number(rows[0].n)).toBe(100);
    } finally {
      client.release();
      await pool.end();
    }
  }, 120_000);
});

/** The names of every index a plan reads. */
function indexesOf(plan: unknown): string[] {
  if (typeof plan !== "object" || plan === null) return [];
  const node = plan as { "Index Name"?: string; Plans?: unknown[] };
  return [
    ...(node["Index Name"] === undefined ? [] : [node["Index Name"]]),
    ...(node.Plans ?? []).flatMap(indexesOf),
  ];
}
