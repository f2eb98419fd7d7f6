/**
 * The store as the CLI's one-shot commands open it: `--db` if given, otherwise the embedded
 * PostgreSQL under --data-dir: the running broker's (found by its postmaster.pid, logged in with
 * the password file), or one started for the command when no broker runs on it.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import type { BrokerConfig } from "../config/types.js";
import { ErrorCode, KiteqError, sqlState } from "../errors.js";
import type { Logger } from "../log.js";
import {
  BROKER_POOL_SETTINGS,
  createPool,
  ensurePartitions,
  newerSchemaError,
  runMigrations,
  schemaState,
  storeConnectFailure,
} from "../store/db.js";
import { type EmbeddedPostgresServer, startEmbeddedPostgres } from "../store/embedded.js";
import { checkShardList, SHARD_CONNECT_TIMEOUT_MS, ShardListMismatch, shardLabel } from "../store/shards.js";
import { addCleanup } from "./interrupt.js";

/** SQLSTATE undefined_table: the schema is not there (migrations not applied). */
const UNDEFINED_TABLE = "42P01";

/**
 * Run `fn` with a small pool on the configured store, then close everything. On the embedded
 * default the migrations are applied first (it is ours); an external database is used as it is:
 * a command that writes is refused on a schema that is not this version's (a newer version
 * migrated it, or `kiteq-pg migrate` has not run), a read warns on a newer one, and a missing
 * table is reported as "run kiteq-pg migrate".
 */
export async function withStore<T>(
  config: BrokerConfig,
  log: Logger,
  fn: (pool: pg.Pool, shards: readonly pg.Pool[]) => Promise<T>,
  options: {
    /** Never make a new embedded store (the command acts on what is stored). */
    readOnly?: boolean;
    /** The command only reads (default: it writes). */
    reads?: boolean;
  } = {},
): Promise<T> {
  let embedded: EmbeddedPostgresServer | undefined;
  let removeCleanup: (() => void) | undefined;
  if (config.databaseUrl === null) {
    const dir = path.resolve(config.dataDir, "pg");
    const never = !existsSync(path.join(dir, "PG_VERSION")) && !existsSync(path.join(dir, "postmaster.pid"));
    if (options.readOnly === true && never) {
      // A read in the wrong folder made a new, empty store there and printed "no events", exit 0.
      throw new KiteqError(
        ErrorCode.ConfigInvalid,
        `no kiteq-pg store in ${dir}: nothing was ever stored here; run the command where the broker runs, or give its --data-dir or --db`,
        { dataDir: dir },
      );
    }
    const interrupted = new AbortController();
    const starting = startEmbeddedPostgres({
      dataDir: path.join(config.dataDir, "pg"),
      port: config.pgPort,
      logger: log,
      attachIfRunning: true,
      abort: interrupted.signal,
    });
    // Ctrl-C while it starts or while the command runs: the PostgreSQL started for this command
    // is stopped (it was left running, and later commands attached to it as to a broker's). One
    // still starting is stopped at once, not once it accepts logins: a start slower than the
    // cleanup's bound (a loaded machine) left it running. A broker's (attached) is never stopped.
    removeCleanup = addCleanup(async () => {
      interrupted.abort();
      await (await starting.catch(() => undefined))?.stop();
    });
    embedded = await starting;
  }
  // Several URLs: the shards, in order (`fn` gets shard 0's pool and all of them).
  const urls = config.databaseUrls.length > 0 ? config.databaseUrls : [embedded!.url("kiteq")];
  // Several shards: one that hangs (its server paused) is given up after 3 s, as a broker does,
  // so a read of the others does not wait the single store's 10 s for it.
  const pools = urls.map((url) =>
    createPool(url, {
      max: 2,
      name: "kiteq-pg cli",
      settings: BROKER_POOL_SETTINGS,
      ...(urls.length > 1 ? { connectTimeoutMs: SHARD_CONNECT_TIMEOUT_MS } : {}),
    }),
  );
  const pool = pools[0]!;
  const labels = urls.map(shardLabel);
  /** Shards that did not answer (several shards only): a read goes on without them. */
  let down = new Map<number, unknown>();
  try {
    if (embedded !== undefined) {
      await runMigrations(pool, log);
      await ensurePartitions(pool, new Date());
    } else {
      // The URLs must be the store's shards in the brokers' order, or reads and writes go to the
      // wrong databases without a word.
      down = await checkShardList(pools, labels);
      if (down.size > 0 && (pools.length === 1 || options.reads !== true || down.size === pools.length)) {
        const first = [...down.keys()][0]!;
        if (pools.length === 1) throw down.get(first);
        throw shardsDownError(
          down,
          labels,
          options.reads === true ? "" : ": this command writes, and runs only with every shard up",
        );
      }
      for (const [shard, p] of pools.entries()) {
        if (down.has(shard)) continue;
        const state = await schemaState(p);
        const where = pools.length > 1 ? `shard ${shard}: ` : "";
        if (state.unknown > 0 && options.reads !== true) throw newerSchemaError(state.unknown);
        if (state.unknown > 0)
          log.warn(`${where}${newerSchemaError(state.unknown).message}; reading it anyway`);
        if (state.pending > 0 && state.unknown === 0 && options.reads !== true) {
          throw new KiteqError(
            ErrorCode.StoreFailed,
            `${where}the database lacks ${state.pending} migration${state.pending === 1 ? "" : "s"} of this kiteq-pg: run kiteq-pg migrate first`,
            { pendingMigrations: state.pending },
          );
        }
      }
    }
    if (down.size > 0) {
      log.warn(`${shardsDownError(down, labels, "").message}; reading the other shards`);
    }
    try {
      return await fn(pool, pools);
    } catch (err) {
      // What failed to connect is (all but surely) a shard that was down at the start: name it.
      if (down.size > 0 && isConnectFailure(err)) {
        throw shardsDownError(down, labels, ": this read needs it, the other shards answered", err);
      }
      throw err;
    }
  } catch (err) {
    // Already said in full (not a connection failure to translate).
    if (err instanceof ShardListMismatch || ownErrors.has(err as object)) throw err;
    if (sqlState(err) === UNDEFINED_TABLE) {
      throw new KiteqError(
        ErrorCode.StoreFailed,
        `the database has no kiteq-pg schema (${(err as Error).message}): run kiteq-pg migrate first`,
        {},
        { cause: err },
      );
    }
    throw storeConnectFailure(err, pools.length === 1 ? pool : undefined) ?? err;
  } finally {
    await Promise.all(pools.map((p) => p.end()));
    await embedded?.stop();
    removeCleanup?.();
  }
}

/** withStore for commands that only act on what is stored (never makes a new embedded store). */
export function withExistingStore<T>(
  config: BrokerConfig,
  log: Logger,
  fn: (pool: pg.Pool, shards: readonly pg.Pool[]) => Promise<T>,
): Promise<T> {
  return withStore(config, log, fn, { readOnly: true });
}

/** A failure to reach a server (a socket's system error, or what storeConnectFailure names). */
function isConnectFailure(err: unknown): boolean {
  // A Unix socket path of a stopped server is ENOENT, which storeConnectFailure does not name.
  return (
    storeConnectFailure(err) !== undefined ||
    typeof (err as { syscall?: unknown } | null)?.syscall === "string"
  );
}

/** One error naming the shards that did not answer (index, host/database, why), then `tail`. */
function shardsDownError(
  down: ReadonlyMap<number, unknown>,
  labels: readonly string[],
  tail: string,
  cause?: unknown,
): KiteqError {
  const names = [...down].map(
    ([i, err]) => `shard ${i} (${labels[i]}) is down: ${err instanceof Error ? err.message : String(err)}`,
  );
  const error = new KiteqError(
    ErrorCode.StoreFailed,
    `${names.join("; ")}${tail}`,
    { shards: [...down.keys()].join(",") },
    { cause: cause ?? down.values().next().value },
  );
  ownErrors.add(error);
  return error;
}

/** The errors shardsDownError made (thrown through withStore's catch as they are). */
const ownErrors = new WeakSet<object>();
