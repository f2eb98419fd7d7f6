/**
 * Partition upkeep beside a reader of recent history (an operator's open psql transaction, a
 * long admin read): publishes never queue behind it. Dropping a day with DROP TABLE took an ACCESS
 * EXCLUSIVE lock on the parent; while that waited for the reader, every insert queued behind it
 * (2 s stalls, then the upkeep failed and its run was left half done); so did creating a day with
 * CREATE TABLE ... PARTITION OF (now created apart and attached, migration 0012).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dropPartitionsBefore, ensurePartitions } from "../../src/store/db.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const DAY = 86_400_000;

describe("partition upkeep beside a reader", () => {
  let db: TestDatabase;
  const now = new Date();
  const old = new Date(now.getTime() - 40 * DAY);

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, now);
    await ensurePartitions(db.pool, old, 1, 1);
    const opts = { nodeId: "t", leaseUntil: now, firstTxCheckAt: now };
    await insertPublishBatch(db.pool, [publishRecord(old, ["g"])], { ...opts, now: old });
  });
  afterAll(async () => db?.drop());

  /** A transaction that has read the last minute of history and stays open for `ms`. */
  async function reader(ms: number): Promise<{ done: Promise<void> }> {
    const client = await db.pool.connect();
    await client.query("BEGIN");
    await client.query("SELECT count(*) FROM message_events WHERE at > now() - interval '1 minute'");
    await client.query("SELECT count(*) FROM messages WHERE stored_at > now() - interval '1 minute'");
    // In an object: an async function returning the promise itself would wait for it.
    const done = (async () => {
      await new Promise((r) => setTimeout(r, ms));
      await client.query("COMMIT");
      client.release();
    })();
    return { done };
  }

  /** How long one publish takes, started `afterMs` from now. */
  async function publishTime(afterMs: number): Promise<number> {
    await new Promise((r) => setTimeout(r, afterMs));
    const t = new Date();
    const started = performance.now();
    await insertPublishBatch(db.pool, [publishRecord(t, ["g"])], {
      now: t,
      nodeId: "t",
      leaseUntil: t,
      firstTxCheckAt: t,
    });
    return performance.now() - started;
  }

  it("creating days: publishes go on, and the days are created although the reader stays", async () => {
    const { done } = await reader(3_000);
    const far = new Date(now.getTime() + 30 * DAY);
    const [created, publish] = await Promise.all([ensurePartitions(db.pool, far, 0, 1), publishTime(300)]);
    await done;
    // Before: the publish waited behind the creation's lock until the reader ended.
    expect(publish).toBeLessThan(1_000);
    expect(created).toBe(4);
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM pg_inherits WHERE inhrelid = to_regclass($1)",
      [`messages_p${far.toISOString().slice(0, 10).replaceAll("-", "")}`],
    );
    expect(rows[0].n).toBe(1);
  });

  it("dropping a day: publishes go on while it waits for the reader, and the day goes", async () => {
    const { done } = await reader(1_500);
    const cutoff = new Date(old.getTime() + 2 * DAY);
    const [dropped, publish] = await Promise.all([dropPartitionsBefore(db.pool, cutoff), publishTime(300)]);
    await done;
    // Before: the publish waited behind the DROP's lock on the parent until the reader ended.
    expect(publish).toBeLessThan(1_000);
    const day = old.toISOString().slice(0, 10).replaceAll("-", "");
    expect(dropped).toEqual(expect.arrayContaining([`messages_p${day}`, `message_events_p${day}`]));
    const { rows } = await db.pool.query("SELECT to_regclass($1) AS t", [`messages_p${day}`]);
    expect(rows[0].t).toBeNull();
  });
});
