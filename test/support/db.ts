/**
 * Per-test-file databases cloned from the migrated template (see global-setup.ts).
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import { inject } from "vitest";
import { createPool } from "../../src/store/db.js";

export interface TestDatabase {
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/** A fresh, migrated database of its own. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = inject("pgAdminUrl");
  const name = `t_${randomBytes(6).toString("hex")}`;
  const admin = createPool(adminUrl, { max: 1 });
  await admin.query(`CREATE DATABASE ${name} TEMPLATE ${inject("pgTemplate")}`);
  await admin.end();
  const url = adminUrl.replace(/\/postgres$/, `/${name}`);
  const pool = createPool(url, { max: 4 });
  return {
    url,
    pool,
    async drop() {
      await pool.end();
      const a = createPool(adminUrl, { max: 1 });
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

/**
 * Runs DDL on the partitioned `messages` table (a test's trigger) while a broker works on it.
 * CREATE/DROP TRIGGER lock the partitions before the parent, and a claim or publish holding the
 * parent while it waits for a partition deadlocks with them (seen: "deadlock detected" on a DROP
 * TRIGGER in CI). Locking the parent first, as every statement of the broker does, cannot.
 */
export async function alterMessagesTable(pool: pg.Pool, ddl: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
    await client.query(ddl);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** The groups a stored message is owed to now (its deliveries rows), sorted. */
export async function owedGroupsOf(pool: pg.Pool, messageId: string): Promise<string[]> {
  const { rows } = await pool.query<{ group_id: string }>(
    `SELECT d.group_id FROM deliveries d JOIN message_ids i ON i.message_pk = d.message_pk
      WHERE i.message_id = $1 ORDER BY 1`,
    [messageId],
  );
  return rows.map((r) => r.group_id);
}

/** How many sessions of the pool's database wait for a lock now (a test holding one waits for this). */
export async function lockWaiters(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
  );
  return rows[0]!.n;
}

/** What store functions send around a statement: transaction control and planner settings. */
const CONTROL = /^(BEGIN|COMMIT|ROLLBACK|SET )/;

/**
 * `pool` with its statements passed through `intercept` (which may fail them, or count them and
 * call `forward`), on the pool and on the clients it lends (a store function running its
 * statement in a transaction of its own). Transaction control and SET statements go through as
 * they are.
 */
export function interceptStatements(
  pool: pg.Pool,
  intercept: (config: pg.QueryConfig, forward: () => Promise<pg.QueryResult>) => Promise<pg.QueryResult>,
): pg.Pool {
  const wrapQuery =
    (target: pg.Pool | pg.PoolClient) =>
    (config: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult> => {
      const q: pg.QueryConfig = typeof config === "string" ? { text: config, values } : config;
      const forward = () => target.query(q);
      return CONTROL.test(q.text) ? forward() : intercept(q, forward);
    };
  return new Proxy(pool, {
    get(target, prop, receiver) {
      if (prop === "query") return wrapQuery(target);
      if (prop === "connect") {
        return async () => {
          const client = await target.connect();
          return new Proxy(client, {
            get(c, p, r) {
              return p === "query" ? wrapQuery(c) : Reflect.get(c, p, r);
            },
          });
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  });
}
