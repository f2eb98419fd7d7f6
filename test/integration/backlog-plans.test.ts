/**
 * Issue 11 at CI size: with 100,000 deliveries owed (and as many acked, with full history), no
 * background or operator statement plans a sequential scan of the history or working tables,
 * whether the planner's statistics are stale (taken on empty tables), what autovacuum keeps, or fresh.
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  analyzeBacklogTables,
  type BacklogFixture,
  buildBacklog,
  sampleBacklog,
} from "../../src/store/backlog-fixture.js";
import { BROKER_POOL_SETTINGS, ensurePartitions } from "../../src/store/db.js";
import { type CatalogSample, statementCatalog } from "../../src/store/statement-catalog.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const OWED = 100_000;
const TABLES =
  /^(deliveries|messages|message_events|message_ids|pending_transactions|dead_letters)(_p[0-9]{8})?$/;

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  Plans?: PlanNode[];
}

function seqScans(node: PlanNode, out: string[] = []): string[] {
  if (node["Node Type"] === "Seq Scan" && TABLES.test(node["Relation Name"] ?? "")) {
    out.push(node["Relation Name"]!);
  }
  for (const child of node.Plans ?? []) seqScans(child, out);
  return out;
}

/** A client whose queries are EXPLAINed instead of run (they return no rows). */
function explaining(client: pg.PoolClient, plans: { text: string; scans: string[] }[]): pg.PoolClient {
  const query = async (config: string | pg.QueryConfig, values?: unknown[]) => {
    const text = typeof config === "string" ? config : config.text;
    const vals = typeof config === "string" ? values : config.values;
    const { rows } = await client.query({ text: `EXPLAIN (FORMAT JSON) ${text}`, values: vals });
    const plan = (rows[0]["QUERY PLAN"] as { Plan: PlanNode }[])[0]!.Plan;
    // A scan of an empty partition (a day with no rows yet) reads nothing: only tables with rows count.
    const scans: string[] = [];
    for (const rel of seqScans(plan)) {
      const size = await client.query<{ n: number }>("SELECT pg_relation_size($1::regclass)::int8 AS n", [
        rel,
      ]);
      if (size.rows[0]!.n > 0) scans.push(rel);
    }
    if (scans.length > 0) {
      const t = await client.query({ text: `EXPLAIN ${text}`, values: vals });
      scans.push(`\n${t.rows.map((r) => r["QUERY PLAN"]).join("\n")}`);
    }
    plans.push({ text, scans });
    return { rows: [], rowCount: 0 };
  };
  return { query } as unknown as pg.PoolClient;
}

describe(`plans of the background statements with ${OWED.toLocaleString("en-US")} owed`, () => {
  let db: TestDatabase;
  let fx: BacklogFixture;
  let sample: CatalogSample;

  beforeAll(async () => {
    db = await createTestDatabase();
    const now = new Date();
    await ensurePartitions(db.pool, now);
    // Statistics of empty tables, and no autovacuum to refresh them: the stale case.
    await analyzeBacklogTables(db.pool);
    for (const t of ["deliveries", "pending_transactions", "message_ids", "owed_counts"]) {
      await db.pool.query(`ALTER TABLE ${t} SET (autovacuum_enabled = false)`);
    }
    const { rows } = await db.pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('messages'::regclass, 'message_events'::regclass)`,
    );
    for (const { name } of rows)
      await db.pool.query(`ALTER TABLE "${name}" SET (autovacuum_enabled = false)`);
    fx = await buildBacklog(db.pool, { owed: OWED, now });
    sample = await sampleBacklog(db.pool, fx, 500);
  }, 300_000);
  afterAll(async () => db.drop());

  // stale: taken on empty tables; autovacuum's: the day partitions and plain tables analysed, the
  // partitioned parents never (autovacuum does not analyse those); fresh: everything analysed.
  for (const stats of ["stale", "autovacuum's", "fresh"] as const) {
    it(`no sequential scan of deliveries, messages or message_events (${stats} statistics)`, async () => {
      if (stats === "autovacuum's") {
        const { rows } = await db.pool.query<{ name: string }>(
          `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent IN ('messages'::regclass, 'message_events'::regclass)`,
        );
        for (const { name } of rows) await db.pool.query(`ANALYZE "${name}"`);
        await db.pool.query("ANALYZE deliveries, pending_transactions, message_ids, owed_counts");
      }
      if (stats === "fresh") await analyzeBacklogTables(db.pool);
      const client = await db.pool.connect();
      // The session the broker's pools have.
      for (const [k, v] of Object.entries(BROKER_POOL_SETTINGS)) await client.query(`SET ${k} = '${v}'`);
      const offenders: string[] = [];
      let explained = 0;
      try {
        for (const entry of statementCatalog(fx, sample)) {
          const plans: { text: string; scans: string[] }[] = [];
          await entry.run(explaining(client, plans));
          expect(plans.length, entry.name).toBeGreaterThan(0);
          explained += plans.length;
          for (const p of plans) {
            if (p.scans.length > 0) offenders.push(`${entry.name}: Seq Scan on ${p.scans.join(", ")}`);
          }
        }
      } finally {
        await client.query("RESET ALL");
        client.release();
      }
      expect(offenders).toEqual([]);
      expect(explained).toBeGreaterThanOrEqual(19);
    });
  }

  it("the fixture is what it says: owed per group from the trigger-kept counts", async () => {
    const { rows } = await db.pool.query("SELECT sum(owed)::int AS n FROM owed_counts WHERE group_id = $1", [
      fx.group,
    ]);
    expect(rows[0].n).toBe(OWED);
  });
});
