/**
 * Migration 0013 fills dead_letters from the history of a store that had none: what the listings
 * before it showed as dead, each message once (its latest dead-lettering, with its last nack's
 * reason), and nothing that was re-driven or acked since (nor a re-drive that expired: it ended expired).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { createPool, ensurePartitions, MIGRATIONS_DIR, runMigrations } from "../../src/store/db.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { publishRecord } from "../support/records.js";

const t0 = new Date("2026-11-26T10:00:00.000Z");

describe("migration 0013 carries a 0012 store's dead letters over", () => {
  const adminUrl = inject("pgAdminUrl");
  const name = `mig13_${Date.now().toString(36)}`;
  let dir: string | undefined;
  afterAll(async () => {
    const a = createPool(adminUrl, { max: 1 });
    await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await a.end();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("the messages dead now, each once with its last nack; re-driven, owed or acked ones left out", async () => {
    const a = createPool(adminUrl, { max: 1 });
    await a.query(`CREATE DATABASE ${name}`);
    await a.end();
    const pool = createPool(adminUrl.replace(/\/postgres$/, `/${name}`), { max: 2 });
    try {
      dir = mkdtempSync(path.resolve(".tmp", "mig13-"));
      cpSync(MIGRATIONS_DIR, dir, { recursive: true });
      const journalPath = path.join(dir, "meta/_journal.json");
      const journal = JSON.parse(readFileSync(journalPath, "utf8"));
      journal.entries = journal.entries.filter((e: { idx: number }) => e.idx < 13);
      writeFileSync(journalPath, JSON.stringify(journal));
      await runMigrations(pool, silentLogger, dir);
      await ensurePartitions(pool, t0);
      const recs = ["dead", "redriven", "acked", "twice", "other", "expired"].map((tag) =>
        publishRecord(t0, [tag === "other" ? "g2" : "g"]),
      );
      await insertPublishBatch(pool, recs, { now: t0, nodeId: "n", leaseUntil: t0, firstTxCheckAt: t0 });
      const [dead, redriven, acked, twice, other, expired] = recs.map((r) => r.messageId);
      // The history 0012's statements wrote: a nack then a dead_lettered row 1 us later, the
      // delivery deleted; a re-drive gave a fresh delivery and a `redriven` row.
      await pool.query(
        `WITH ev(mid, g, kind, ms, detail) AS (VALUES
           ($1, 'g', 'nacked', 1000, 'boom'), ($1, 'g', 'dead_lettered', 1001, 'deliver limit reached'),
           ($2, 'g', 'nacked', 1000, 'x'), ($2, 'g', 'dead_lettered', 1001, 'deliver limit reached'),
           ($2, 'g', 'redriven', 2000, 'test'),
           ($3, 'g', 'nacked', 1000, 'x'), ($3, 'g', 'dead_lettered', 1001, 'deliver limit reached'),
           ($3, 'g', 'redriven', 2000, 'test'), ($3, 'g', 'acked', 3000, NULL),
           ($4, 'g', 'nacked', 1000, 'first'), ($4, 'g', 'dead_lettered', 1001, 'deliver limit reached'),
           ($4, 'g', 'redriven', 2000, 'test'),
           ($4, 'g', 'nacked', 4000, 'second'), ($4, 'g', 'dead_lettered', 4001, 'deliver limit reached'),
           ($5, 'g2', 'nacked', 1000, 'other group'), ($5, 'g2', 'dead_lettered', 1001, 'deliver limit reached'),
           ($7, 'g', 'nacked', 1000, 'x'), ($7, 'g', 'dead_lettered', 1001, 'deliver limit reached'),
           ($7, 'g', 'redriven', 2000, 'test'), ($7, 'g', 'expired', 3000, 'expiredTime passed'))
         INSERT INTO message_events (message_pk, kind, at, group_id, node_id, attempt, detail)
         SELECT i.message_pk, ev.kind::message_event_kind, $6::timestamptz + ev.ms * interval '1 millisecond', ev.g,
                'n', 1, ev.detail
           FROM ev JOIN message_ids i ON i.message_id = ev.mid`,
        [dead, redriven, acked, twice, other, t0, expired],
      );
      // Every delivery ended but the re-driven one's, still owed.
      await pool.query(
        "DELETE FROM deliveries WHERE message_pk <> (SELECT message_pk FROM message_ids WHERE message_id = $1)",
        [redriven],
      );

      await runMigrations(pool, silentLogger);

      const { rows } = await pool.query(
        `SELECT message_id, group_id, topic, message_type, attempt, last_error,
                extract(epoch FROM dead_at - $1::timestamptz) * 1000 AS ms
           FROM dead_letters ORDER BY group_id, message_id`,
        [t0],
      );
      expect(
        rows.map((r) => [r.message_id, r.group_id, r.last_error, Number(r.ms), r.topic, r.message_type]),
      ).toEqual(
        [
          [dead, "g", "boom", 1001, "trade", "pay"],
          [twice, "g", "second", 4001, "trade", "pay"],
          [other, "g2", "other group", 1001, "trade", "pay"],
        ].sort((x, y) => (`${x[1]} ${x[0]}` < `${y[1]} ${y[0]}` ? -1 : 1)),
      );
    } finally {
      await pool.end();
    }
  });
});
