/**
 * Connection pools, migrations and partition upkeep of the store.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type MigrationMeta, readMigrationFiles } from "drizzle-orm/migrator";
import pg from "pg";
import { ErrorCode, KiteqError, sqlState } from "../errors.js";
import type { Logger } from "../log.js";
import { clientSetup } from "./failover.js";
import { forgetRegxRoutingBefore } from "./regx-routing.js";
import { shardLabel } from "./shards.js";

/** migrations/ beside src/ (and beside dist/ once built). */
export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../migrations");

/**
 * statement_timeout of the broker's pools: no statement of the broker should take more than a
 * fraction of a second; one that runs this long fails, and its job retries in bounded batches.
 */
export const BACKGROUND_STATEMENT_TIMEOUT_MS = 30_000;

/**
 * Session settings of every pool the broker runs statements on. Every statement of the broker has
 * an index path; with sequential scans priced out, a planner working from stale statistics (a
 * table analysed when it was empty, then filled with a million rows) still takes it (issue 11).
 * JIT off: before PostgreSQL 18 a disabled scan adds 1e10 to a plan's cost, which crosses
 * jit_above_cost, and compiling a short statement took 300-450 ms (measured on Debian's
 * PostgreSQL 15, where JIT is on); none of the broker's statements gains from JIT.
 * Generic plans for the named (prepared) statements, planned once per connection: left to choose,
 * PostgreSQL planned the claim afresh every time (its generic plan is priced above the custom
 * ones), 0.6-0.7 ms of a 1.3 ms claim of a few rows; the generic plans of every statement are
 * held to their index paths by test/integration/backlog-plans.test.ts.
 */
export const BROKER_POOL_SETTINGS: Readonly<Record<string, string>> = {
  statement_timeout: String(BACKGROUND_STATEMENT_TIMEOUT_MS),
  enable_seqscan: "off",
  jit: "off",
  plan_cache_mode: "force_generic_plan",
};

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

/**
 * A pool on `url` with the settings every broker statement expects (UTC). `url` may name several
 * hosts with a target_session_attrs (libpq's forms, store/hosts.ts): each new connection then
 * goes to the server chosen among them, and after a failover to the promoted one
 * (store/failover.ts). `log` hears of host changes. Throws KQ_CONFIG_INVALID for a malformed URL.
 */
export function createPool(
  url: string,
  options: {
    max?: number;
    name?: string;
    settings?: Record<string, string>;
    log?: Logger;
    connectTimeoutMs?: number;
    /**
     * Give up on a statement after this long, client-side, and drop its connection: for reads
     * nobody must wait on for ever (admin requests). A server that stopped answering (SIGSTOP, a
     * host gone without a reset) never fires statement_timeout, and each such read held a
     * connection of its pool until the server answered again.
     */
    queryTimeoutMs?: number;
  } = {},
): pg.Pool {
  const extra = Object.entries(options.settings ?? {})
    .map(([k, v]) => ` -c ${k}=${v}`)
    .join("");
  const { Client, connectionString } = clientSetup(url, options.log);
  const pool = new pg.Pool({
    Client,
    connectionString,
    max: options.max ?? 8,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: options.name ?? "kiteq-pg",
    options: `-c timezone=UTC${extra}`,
    types,
    ...(options.queryTimeoutMs === undefined ? {} : { query_timeout: options.queryTimeoutMs }),
  });
  // An idle client that errors (server restart) must not crash the process: the pool drops it.
  pool.on("error", () => undefined);
  poolTargets.set(pool, shardLabel(url));
  return pool;
}

/** Each pool's server(s) and database, without credentials, for error messages. */
const poolTargets = new WeakMap<pg.Pool, string>();

/** Node's codes for a server that could not be reached at all (as opposed to one that refused us). */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/**
 * SQLSTATEs of a server that answered but refused the connection: class 28 (wrong password, no
 * pg_hba.conf entry), no such database, too many connections, starting up or shutting down.
 */
const REFUSED_STATES: ReadonlySet<string> = new Set(["28000", "28P01", "3D000", "53300", "57P03"]);

/**
 * A connection failure as an operator reads it, code StoreFailed: "PostgreSQL at host:port
 * unreachable (connect ECONNREFUSED ...)" or "PostgreSQL at host:port/db refused the connection
 * (password authentication failed ...)"; undefined when `err` is not one (a statement's error
 * keeps its own message).
 */
export function storeConnectFailure(err: unknown, pool?: pg.Pool): KiteqError | undefined {
  if (!(err instanceof Error)) return undefined;
  const state = sqlState(err);
  if (state !== undefined) {
    if (!REFUSED_STATES.has(state)) return undefined;
    const target = (pool ? poolTargets.get(pool) : undefined) ?? "the database";
    return new KiteqError(
      ErrorCode.StoreFailed,
      `PostgreSQL at ${target} refused the connection (${err.message})`,
      {},
      { cause: err },
    );
  }
  const { code, address, port, hostname } = err as {
    code?: unknown;
    address?: unknown;
    port?: unknown;
    hostname?: unknown;
  };
  // pg's own connect timeout carries no code, only its message; so does a server that closed the
  // connection before answering (not a PostgreSQL server at all, e.g. an HTTP port in --db).
  const timedOut = /connection timeout|timeout expired/i.test(err.message);
  const closed = /^Connection terminated unexpectedly$/.test(err.message);
  if (!(typeof code === "string" && UNREACHABLE_CODES.has(code)) && !timedOut && !closed) return undefined;
  // The address the socket tried (right with several hosts or shards), else the pool's target.
  const tried =
    typeof address === "string"
      ? `${address}${typeof port === "number" ? `:${port}` : ""}`
      : typeof hostname === "string"
        ? hostname
        : undefined;
  const target = tried ?? (pool ? poolTargets.get(pool) : undefined) ?? "the database";
  return new KiteqError(
    ErrorCode.StoreFailed,
    closed
      ? `PostgreSQL at ${target} closed the connection before answering (${err.message}): is a PostgreSQL server listening there?`
      : `PostgreSQL at ${target} unreachable (${err.message})`,
    {},
    { cause: err },
  );
}

/** Where drizzle records applied migrations (its layout, kept so drizzle-kit reads the same). */
const APPLIED_TABLE = "drizzle.__drizzle_migrations";

/**
 * How long one migration statement waits for a table lock. A migration that takes a table
 * exclusively queues behind every open transaction that read it (an operator's psql session, a
 * pg_dump), and every statement of the running nodes then queues behind the migration: bounded,
 * it gives up, the running nodes go on, and it is tried again.
 */
const MIGRATION_LOCK_TIMEOUT = "5s";
const MIGRATION_RETRY_MS = 2_000;

/** One migration of the folder: its journal tag and `when` (its identity in the database). */
interface Migration extends MigrationMeta {
  tag: string;
}

function readMigrations(folder: string): Migration[] {
  const journal = JSON.parse(readFileSync(path.join(folder, "meta", "_journal.json"), "utf8")) as {
    entries: { tag: string; when: number }[];
  };
  return readMigrationFiles({ migrationsFolder: folder }).map((m, i) => ({
    ...m,
    tag: journal.entries[i]?.tag ?? String(m.folderMillis),
  }));
}

/** How a database's schema compares with this kiteq-pg's migrations (see schemaState). */
export interface SchemaState {
  /** Migrations applied that this kiteq-pg does not know: a newer version applied them. */
  unknown: number;
  /** Migrations of this kiteq-pg not applied yet (all of them on a database never migrated). */
  pending: number;
}

/** Read, without changing anything, which migrations a database holds (see SchemaState). */
export async function schemaState(
  db: pg.Pool | pg.PoolClient,
  folder = MIGRATIONS_DIR,
): Promise<SchemaState> {
  const migrations = readMigrations(folder);
  const { rows: exists } = await db.query<{ t: string | null }>("SELECT to_regclass($1)::text AS t", [
    APPLIED_TABLE,
  ]);
  if (exists[0]?.t == null) return { unknown: 0, pending: migrations.length };
  const { unknown, pending } = await compareMigrations(db, migrations);
  return { unknown: unknown.length, pending: pending.length };
}

/** The migrations applied that `migrations` does not know, and those of `migrations` not applied. */
async function compareMigrations(
  db: pg.Pool | pg.PoolClient,
  migrations: readonly Migration[],
): Promise<{ unknown: number[]; pending: Migration[] }> {
  const { rows } = await db.query<{ created_at: number }>(`SELECT created_at FROM ${APPLIED_TABLE}`);
  const applied = new Set(rows.map((r) => Number(r.created_at)));
  const known = new Set(migrations.map((m) => m.folderMillis));
  return {
    unknown: [...applied].filter((w) => !known.has(w)),
    pending: migrations.filter((m) => !applied.has(m.folderMillis)),
  };
}

/** The refusal for a database a newer kiteq-pg migrated (`unknown` migrations this one does not know). */
export function newerSchemaError(unknown: number): KiteqError {
  return new KiteqError(
    ErrorCode.StoreFailed,
    `the database holds ${unknown} migration${unknown === 1 ? "" : "s"} this kiteq-pg does not know ` +
      "(a newer version applied them): run that version or a later one, not an older one",
    { unknownMigrations: unknown },
  );
}

/**
 * Apply the migrations of `folder` that the database has not recorded (idempotent; serialised
 * across nodes by an advisory lock), all in one transaction. A migration is known by its journal
 * `when`: every one not recorded is applied, whatever its `when` (drizzle's own migrator applies
 * only those later than the last one recorded, so a migration stamped earlier than one already
 * applied would be skipped without a word). A database holding migrations this code does not
 * know (a newer version applied them) is refused. Returns the tags applied.
 */
export async function runMigrations(
  pool: pg.Pool,
  logger: Logger,
  folder = MIGRATIONS_DIR,
  /** A stop during startup: the waits for a lock end with its reason. */
  signal?: AbortSignal,
): Promise<string[]> {
  const migrations = readMigrations(folder);
  const client = await pool.connect().catch((err: unknown) => {
    throw storeConnectFailure(err, pool) ?? err;
  });
  let current: string | undefined;
  try {
    // A migration that carries data over may take longer than any broker statement may.
    await client.query("SET statement_timeout = 0");
    await takeMigrationLock(client, logger, signal);
    try {
      await client.query("CREATE SCHEMA IF NOT EXISTS drizzle");
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${APPLIED_TABLE} (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)`,
      );
      const { unknown, pending } = await compareMigrations(client, migrations);
      if (unknown.length > 0) throw newerSchemaError(unknown.length);
      if (pending.length === 0) {
        logger.debug("database schema up to date");
        return [];
      }
      const t0 = Date.now();
      for (let attempt = 1; ; attempt++) {
        try {
          await client.query("BEGIN");
          await client.query(`SET LOCAL lock_timeout = '${MIGRATION_LOCK_TIMEOUT}'`);
          for (const m of pending) {
            current = m.tag;
            for (const stmt of m.sql) if (stmt.trim() !== "") await client.query(stmt);
            await client.query(`INSERT INTO ${APPLIED_TABLE} (hash, created_at) VALUES ($1, $2)`, [
              m.hash,
              m.folderMillis,
            ]);
          }
          current = undefined;
          await client.query("COMMIT");
          break;
        } catch (err) {
          await client.query("ROLLBACK").catch(() => undefined);
          if (sqlState(err) !== "55P03") throw err;
          const holders = await longTransactions(client);
          logger.warn(
            { migration: current, attempt, retryInMs: MIGRATION_RETRY_MS, holders },
            `migration waits for a table lock held by another session (longer than ${MIGRATION_LOCK_TIMEOUT}); the running nodes go on, and it is tried again`,
          );
          current = undefined;
          signal?.throwIfAborted();
          await new Promise((r) => setTimeout(r, MIGRATION_RETRY_MS));
          signal?.throwIfAborted();
        }
      }
      logger.info({ applied: pending.map((m) => m.tag), ms: Date.now() - t0 }, "migrations applied");
      return pending.map((m) => m.tag);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_ID]).catch(() => undefined);
      await client.query("RESET statement_timeout").catch(() => undefined);
    }
  } catch (err) {
    if (err instanceof KiteqError || signal?.aborted) throw err;
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `migration ${current ?? ""}${current === undefined ? "" : " "}failed: ${(err as Error).message}`,
      current === undefined ? {} : { migration: current },
      { cause: err },
    );
  } finally {
    client.release();
  }
}

/** Take the migration lock; while another node migrates, say so (every 10 s) instead of hanging mute. */
async function takeMigrationLock(client: pg.PoolClient, logger: Logger, signal?: AbortSignal): Promise<void> {
  let saidAt = 0;
  for (;;) {
    signal?.throwIfAborted();
    const { rows } = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [
      MIGRATION_LOCK_ID,
    ]);
    if (rows[0]?.ok === true) return;
    if (Date.now() - saidAt >= 10_000) {
      saidAt = Date.now();
      const { rows: by } = await client.query<{ pid: number; application_name: string }>(
        `SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND l.objid = $1 LIMIT 1`,
        [MIGRATION_LOCK_ID],
      );
      logger.info(
        { heldBy: by[0] === undefined ? undefined : `${by[0].application_name} (pid ${by[0].pid})` },
        "waiting for another session's migration to finish",
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Sessions whose transaction is older than the lock timeout: what a migration waits behind. */
async function longTransactions(client: pg.PoolClient): Promise<string[]> {
  const { rows } = await client.query<{ d: string }>(
    `SELECT application_name || ' pid ' || pid || ' (' || state || ', transaction open ' ||
            round(extract(epoch FROM now() - xact_start))::text || ' s)' AS d
       FROM pg_stat_activity
      WHERE pid <> pg_backend_pid() AND xact_start < now() - interval '${MIGRATION_LOCK_TIMEOUT}'
      ORDER BY xact_start LIMIT 5`,
  );
  return rows.map((r) => r.d);
}

/**
 * How long partition upkeep waits for the history tables' locks: creating or dropping a partition
 * queues behind every statement reading the table, and every publish would queue behind it.
 */
const UPKEEP_LOCK_TIMEOUT = "2s";

/** Run `fn` in a transaction on one pooled client (committed, or rolled back when asked: a dry run). */
export async function inTransaction<T>(
  pool: pg.Pool,
  fn: (c: pg.PoolClient) => Promise<T>,
  options: { rollback?: boolean } = {},
): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query("BEGIN");
    const result = await fn(c);
    // rollback: a dry run, which does the work and keeps none of it.
    await c.query(options.rollback === true ? "ROLLBACK" : "COMMIT");
    return result;
  } catch (err) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

/** `fn` in one transaction: on a pool, on a client of its own; on a client, in the caller's. */
export function inOneTransaction<T>(
  db: pg.Pool | pg.PoolClient,
  fn: (c: pg.Pool | pg.PoolClient) => Promise<T>,
): Promise<T> {
  // A pool has totalCount; anything else (a client, a caller's wrapper) runs both as it is.
  return "totalCount" in db ? inTransaction(db, fn) : fn(db);
}

/** Run `fn` in a transaction whose lock waits are bounded by UPKEEP_LOCK_TIMEOUT. */
function withUpkeepLock<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(pool, async (client) => {
    await client.query(`SET LOCAL lock_timeout = '${UPKEEP_LOCK_TIMEOUT}'`);
    return fn(client);
  });
}

/**
 * Create the daily history partitions around `now` (`daysBack` days back .. `daysAhead` days on).
 * Rows land in the day of the broker's clock, and there is no default partition: a week ahead
 * leaves upkeep (hourly) plenty of chances.
 */
export async function ensurePartitions(
  pool: pg.Pool,
  now: Date,
  daysBack = 8,
  daysAhead = 7,
): Promise<number> {
  const day = 86_400_000;
  const from = new Date(now.getTime() - daysBack * day).toISOString().slice(0, 10);
  const to = new Date(now.getTime() + (daysAhead + 1) * day).toISOString().slice(0, 10);
  return withUpkeepLock(pool, async (client) => {
    const { rows } = await client.query<{ created: number }>(
      "SELECT kiteq_ensure_partitions($1::date, $2::date) AS created",
      [from, to],
    );
    return rows[0]?.created ?? 0;
  });
}

/**
 * The daily partitions of `parent` that end at or before the day of `before` (names hold the
 * day): attached, half detached (a DETACH CONCURRENTLY that was interrupted: `pending`), or
 * detached and not dropped yet (`attached` false).
 */
const DAYS_BEFORE = `
SELECT c.relname AS name, i.inhrelid IS NOT NULL AS attached, coalesce(i.inhdetachpending, false) AS pending
  FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
 WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
   AND c.relname ~ ('^' || $1 || '_p[0-9]{8}$') AND right(c.relname, 8) < $2
   AND (i.inhparent IS NULL OR i.inhparent = $1::regclass)
 ORDER BY c.relname`;

/**
 * One batch of retention's message_ids cleanup: the ids of the next `limit` messages of the day
 * partition `partition` above `lastId` (its id index), deleted from message_ids, and their dead
 * letters. Returns the last id read and how many were read.
 */
export async function forgetMessageIdsBatch(
  db: pg.Pool | pg.PoolClient,
  partition: string,
  lastId: number,
  limit: number,
): Promise<{ lastId: number | null; n: number }> {
  if (!/^messages_p[0-9]{8}$/.test(partition)) throw new Error(`not a messages day partition: ${partition}`);
  const { rows } = await db.query<{ last_id: number | null; n: number }>({
    text: `WITH b AS (SELECT id, message_id FROM "${partition}" WHERE id > $1 ORDER BY id LIMIT $2),
                -- = ANY(ARRAY(...)): probes of the primary key, never a join that could scan message_ids.
                d AS (DELETE FROM message_ids i
                       WHERE i.message_id = ANY (ARRAY(SELECT message_id FROM b))
                         AND i.message_pk = ANY (ARRAY(SELECT id FROM b))),
                -- Their dead letters go with their history (migration 0013).
                x AS (DELETE FROM dead_letters x WHERE x.message_pk = ANY (ARRAY(SELECT id FROM b)))
           SELECT max(id) AS last_id, count(*)::int AS n FROM b`,
    values: [lastId, limit],
  });
  return { lastId: rows[0]?.last_id ?? null, n: rows[0]?.n ?? 0 };
}

/** Rows per batch of retention's message_ids cleanup. */
const RETENTION_BATCH = 5000;

/** 00:00 UTC of a YYYYMMDD day. */
function dayStart(day: string): Date {
  return new Date(`${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6, 8)}T00:00:00.000Z`);
}

/**
 * Retention: drop the daily history partitions that end at or before `before`, each detached first
 * (detachDay: publishes never queue behind it). Whole partitions only; no history row is ever
 * deleted otherwise. A messages partition's ids leave message_ids
 * first (batches by id), so the same messageId may be used again once its day is gone. Returns
 * the dropped partition names.
 */
export async function dropPartitionsBefore(pool: pg.Pool, before: Date): Promise<string[]> {
  const cutoff = before.toISOString().slice(0, 10).replaceAll("-", "");
  const dropped: string[] = [];
  for (const parent of ["messages", "message_events"]) {
    const { rows } = await pool.query<{ name: string; attached: boolean; pending: boolean }>(DAYS_BEFORE, [
      parent,
      cutoff,
    ]);
    for (const { name, attached, pending } of rows) {
      if (!/^[a-z_]+_p[0-9]{8}$/.test(name)) continue;
      if (parent === "messages" && attached && !pending) {
        // SQL publishes still waiting for a Regx match from that day (no upgraded broker ran).
        await forgetRegxRoutingBefore(pool, dayStart(cutoff), RETENTION_BATCH);
        for (let lastId = 0; ; ) {
          const batch = await forgetMessageIdsBatch(pool, name, lastId, RETENTION_BATCH);
          if (batch.n < RETENTION_BATCH || batch.lastId === null) break;
          lastId = batch.lastId;
        }
      }
      if (attached) await detachDay(pool, parent, name, pending);
      // A table of its own now: only a reader that still holds it can hold the drop up.
      await withUpkeepLock(pool, (client) => client.query(`DROP TABLE IF EXISTS "${name}"`));
      dropped.push(name);
    }
  }
  return dropped;
}

/**
 * Detach a day from its parent without making publishes wait: CONCURRENTLY takes a SHARE UPDATE
 * EXCLUSIVE lock on the parent (inserts and reads go on beside it) and then waits for the
 * transactions that may still read the day. A plain DROP TABLE of a partition took an ACCESS
 * EXCLUSIVE lock on the parent, and while it waited for one reader (an operator's open psql
 * transaction, a long admin read) every publish and ack queued behind it, up to the lock timeout
 * (2 s stalls, an operator walkthrough). Interrupted (the lock timeout while a reader stays), the
 * day stays half detached, invisible to new statements: the next run finishes it (FINALIZE).
 * Neither form runs in a transaction block.
 */
async function detachDay(pool: pg.Pool, parent: string, name: string, pending: boolean): Promise<void> {
  const client = await pool.connect();
  let failed: unknown;
  try {
    await client.query(`SET lock_timeout = '${DETACH_LOCK_TIMEOUT}'`);
    await client.query(
      `ALTER TABLE "${parent}" DETACH PARTITION "${name}" ${pending ? "FINALIZE" : "CONCURRENTLY"}`,
    );
    await client.query("RESET lock_timeout");
  } catch (err) {
    failed = err;
    throw err;
  } finally {
    // A connection whose statement failed half way is not reused.
    client.release(failed !== undefined);
  }
}

/** How long a detach waits for the day's readers before it leaves the day half detached. */
const DETACH_LOCK_TIMEOUT = "10s";

/** The store answers (health check). Throws when it does not. */
export async function pingStore(db: pg.Pool | pg.PoolClient, timeoutMs?: number): Promise<void> {
  // With a timeout, a pool drops the connection of a ping that got no answer (pg's query_timeout):
  // a load balancer probing a hung server must not take one connection per probe for good.
  // (pg reads query_timeout from a query's config too; its types know only the pool's.)
  const ping: pg.QueryConfig & { query_timeout?: number } = { text: "SELECT 1" };
  if (timeoutMs !== undefined) ping.query_timeout = timeoutMs;
  await db.query(ping);
}
