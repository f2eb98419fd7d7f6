/**
 * Connection pools, migrations and partition upkeep of the store.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import { ErrorCode, KiteqError } from "../errors.js";
import type { Logger } from "../log.js";

/** migrations/ beside src/ (and beside dist/ once built). */
export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../migrations");

/** Lock id under which migrations run, so nodes starting together migrate once. */
const MIGRATION_LOCK_ID = 0x6b697465; // "kite"

const INT8_OID = 20;
/** Internal ids are < 2^53: read bigint as number rather than string. */
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** A pool on `url` with the settings every broker statement expects (UTC). */
export function createPool(
  url: string,
  options: { max?: number; name?: string; settings?: Record<string, string> } = {},
): pg.Pool {
  const extra = Object.entries(options.settings ?? {})
    .map(([k, v]) => ` -c ${k}=${v}`)
    .join("");
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 8,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    application_name: options.name ?? "kiteq-pg",
    options: `-c timezone=UTC${extra}`,
    types,
  });
  // An idle client that errors (server restart) must not crash the process: the pool drops it.
  pool.on("error", () => undefined);
  return pool;
}

/** Apply the migrations in migrations/ (idempotent; serialised across nodes by an advisory lock). */
export async function runMigrations(pool: pg.Pool, logger: Logger): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_ID]);
    try {
      await migrate(drizzle(client), { migrationsFolder: MIGRATIONS_DIR });
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_ID]);
    }
    logger.debug("migrations applied");
  } catch (err) {
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `migration failed: ${(err as Error).message}`,
      {},
      { cause: err },
    );
  } finally {
    client.release();
  }
}

/** Create the daily history partitions around `now` (yesterday .. `daysAhead` days on). */
export async function ensurePartitions(
  pool: pg.Pool,
  now: Date,
  daysBack = 8,
  daysAhead = 3,
): Promise<number> {
  const day = 86_400_000;
  const from = new Date(now.getTime() - daysBack * day).toISOString().slice(0, 10);
  const to = new Date(now.getTime() + (daysAhead + 1) * day).toISOString().slice(0, 10);
  const { rows } = await pool.query<{ created: number }>(
    "SELECT kiteq_ensure_partitions($1::date, $2::date) AS created",
    [from, to],
  );
  return rows[0]?.created ?? 0;
}

/**
 * Retention: drop the daily history partitions that end at or before `before`. Whole partitions
 * only; no history row is ever deleted otherwise. Returns the dropped partition names.
 */
export async function dropPartitionsBefore(pool: pg.Pool, before: Date): Promise<string[]> {
  const cutoff = before.toISOString().slice(0, 10).replaceAll("-", "");
  const { rows } = await pool.query<{ name: string }>(
    `SELECT c.relname AS name
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
      WHERE p.relname IN ('messages', 'message_events')
        AND c.relname ~ '_p[0-9]{8}$' AND right(c.relname, 8) < $1`,
    [cutoff],
  );
  for (const { name } of rows) await pool.query(`DROP TABLE IF EXISTS "${name}"`);
  return rows.map((r) => r.name);
}

/** The store answers (health check). Throws when it does not. */
export async function pingStore(db: pg.Pool | pg.PoolClient): Promise<void> {
  await db.query("SELECT 1");
}
