/**
 * What every suite runs on: one embedded PostgreSQL (fsync on, the broker's default settings) in a
 * temp dir under ./.tmp (not os.tmpdir(): a 0700 parent locks the postgres user out), fresh
 * databases on it, and a cleanup stack that runs on success, on failure and on SIGINT/SIGTERM:
 * child processes stopped, PostgreSQL stopped, the temp dir removed.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import type pg from "pg";
import { silentLogger } from "../log.js";
import { createPool, ensurePartitions, runMigrations } from "../store/db.js";
import { type EmbeddedPostgresServer, startEmbeddedPostgres } from "../store/embedded.js";
import { LINK_NOTE_SUFFIX, RUNTIME_BASE } from "../store/embedded-place.js";

/** The repository root (src/bench/../..). */
export const ROOT = path.resolve(import.meta.dirname, "../..");

/** A running bench environment. */
export class BenchEnv {
  private readonly cleanups: (() => Promise<void> | void)[] = [];
  private closingPromise: Promise<void> | undefined;

  /** What prepareWal did to the first server (the JSON's `wal_state`). */
  private walState = "new store: no WAL segment to recycle (--fresh-wal 1)";

  private constructor(
    readonly dir: string,
    readonly pg: EmbeddedPostgresServer,
    private readonly freshWal: boolean,
  ) {}

  /**
   * Start PostgreSQL in a fresh temp dir; `settings` adds `-c` settings (same for all systems).
   * Unless `freshWal`, its WAL is then prepared as a store's that has run (prepareWal).
   */
  static async create(
    label: string,
    settings: Record<string, string> = {},
    freshWal = false,
  ): Promise<BenchEnv> {
    const base = path.join(ROOT, ".tmp");
    await mkdir(base, { recursive: true });
    const dir = await mkdtemp(path.join(base, `bench-${label}-`));
    let server: EmbeddedPostgresServer;
    try {
      server = await startEmbeddedPostgres({
        dataDir: path.join(dir, "pg"),
        logger: silentLogger,
        settings: { max_connections: "300", ...settings },
      });
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    const env = new BenchEnv(dir, server, freshWal);
    if (!freshWal) {
      try {
        env.walState = await prepareWal(server);
      } catch (err) {
        await env.close();
        throw err;
      }
      console.error(`bench: ${env.walState}`);
    }
    return env;
  }

  /** The signal that interrupted the run (cleanup under way), if one did. */
  interrupted: NodeJS.Signals | undefined;

  /** True once close() began: nothing new may start (its cleanup would not run). */
  get closing(): boolean {
    return this.closingPromise !== undefined;
  }

  /** Register a cleanup; they run last-registered first. Throws once close() began. */
  defer(fn: () => Promise<void> | void): void {
    if (this.closing)
      throw new Error(`environment closing${this.interrupted ? ` (${this.interrupted})` : ""}`);
    this.cleanups.push(fn);
  }

  /**
   * Another embedded PostgreSQL in the environment's temp dir (same settings as the first), for
   * suites that need several servers (`e2e --shards`): stopped and removed by close().
   */
  async extraServer(label: string, settings: Record<string, string> = {}): Promise<EmbeddedPostgresServer> {
    const dataDir = path.join(this.dir, `pg-${label}`);
    const server = await startEmbeddedPostgres({
      dataDir,
      logger: silentLogger,
      settings: { max_connections: "300", ...settings },
    });
    if (!this.freshWal) await prepareWal(server);
    this.defer(async () => {
      await server.stop().catch((err: Error) => console.error(`bench: stopping PostgreSQL: ${err.message}`));
      if (server.dataDir.startsWith(`${RUNTIME_BASE}${path.sep}`)) {
        await rm(server.dataDir, { recursive: true, force: true });
        await rm(`${server.dataDir}${LINK_NOTE_SUFFIX}`, { force: true });
      }
    });
    return server;
  }

  /** A fresh, empty database (dropped first if it exists) on `server` (default: the first); returns its URL. */
  async freshDatabase(name: string, server: EmbeddedPostgresServer = this.pg): Promise<string> {
    await this.asAdmin(async (admin) => {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.query(`CREATE DATABASE "${name}"`);
    }, server);
    return server.url(name);
  }

  /** Run `work` on a one-connection pool to `server`'s postgres database, closed afterwards. */
  private async asAdmin<T>(work: (admin: pg.Pool) => Promise<T>, server = this.pg): Promise<T> {
    const admin = createPool(server.url("postgres"), { max: 1, name: "kiteq-bench" });
    try {
      return await work(admin);
    } finally {
      await admin.end();
    }
  }

  /** A fresh database with kiteq-pg's schema, and a small pool on it (closed by close()). */
  async kiteqDatabase(
    name: string,
    server: EmbeddedPostgresServer = this.pg,
  ): Promise<{ url: string; pool: pg.Pool }> {
    const url = await this.freshDatabase(name, server);
    const pool = createPool(url, { max: 4, name: "kiteq-bench" });
    this.defer(() => pool.end());
    await runMigrations(pool, silentLogger);
    await ensurePartitions(pool, new Date());
    return { url, pool };
  }

  /**
   * Drop a database whose figures are taken (its connections ended) and checkpoint: what one
   * compare row left behind, autovacuum of its tables and the flush of its dirty pages, must not
   * run during the next row's measurements (a graphile-worker burn-down after the kiteq-pg rows
   * ran at 1,311/s, against 16,000-19,000 in other runs, with 756 us of server CPU a job).
   */
  async retireDatabase(name: string): Promise<void> {
    await this.asAdmin(async (admin) => {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.query("CHECKPOINT");
    });
  }

  /** Size of a database in bytes. */
  async databaseSize(name: string): Promise<number> {
    return this.asAdmin(async (admin) => {
      const { rows } = await admin.query<{ size: string }>("SELECT pg_database_size($1)::text AS size", [
        name,
      ]);
      return Number(rows[0]?.size ?? 0);
    });
  }

  /** The server settings that matter for the figures, for the JSON report. */
  async describeSettings(): Promise<Record<string, string>> {
    return this.asAdmin(async (admin) => {
      const names = [
        "server_version",
        "fsync",
        "synchronous_commit",
        "shared_buffers",
        "wal_buffers",
        "max_wal_size",
        "min_wal_size",
      ];
      const { rows } = await admin.query<{ name: string; setting: string; unit: string | null }>(
        "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)",
        [names],
      );
      return {
        ...Object.fromEntries(rows.map((r) => [r.name, r.unit ? `${r.setting} ${r.unit}` : r.setting])),
        wal_state: this.walState,
      };
    });
  }

  /** Run the cleanups, stop PostgreSQL, remove the temp dir. Safe to call twice. */
  close(): Promise<void> {
    this.closingPromise ??= (async () => {
      for (const fn of this.cleanups.splice(0).reverse()) {
        try {
          await fn();
        } catch (err) {
          console.error(`bench: cleanup failed: ${(err as Error).message}`);
        }
      }
      await this.pg.stop().catch((err: Error) => console.error(`bench: stopping PostgreSQL: ${err.message}`));
      // As root in a 0700 folder the data dir was placed under /var/lib/kiteq-pg: remove it too.
      if (this.pg.dataDir.startsWith(`${RUNTIME_BASE}${path.sep}`)) {
        await rm(this.pg.dataDir, { recursive: true, force: true });
        await rm(`${this.pg.dataDir}${LINK_NOTE_SUFFIX}`, { force: true });
      }
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.closingPromise;
  }
}

/** WAL segments prepareWal writes: min_wal_size (1 GB, the embedded default) of 16 MB segments. */
const PREPARED_WAL_SEGMENTS = 64;

/**
 * Prepare `server`'s WAL as a store's that has run: write PREPARED_WAL_SEGMENTS segments (one WAL
 * record and a switch each) and checkpoint, so they are recycled for what comes next. A new store
 * has none: each segment its commits need is first written full of zeros and flushed on a commit's
 * path (`wal_init_zero`), a stall of tens of ms every ~0.4 s at 5,000 msg/s to 4 groups, which no store
 * that has run a while (and kept min_wal_size of segments) shows. Returns what it did, for the JSON.
 */
async function prepareWal(server: EmbeddedPostgresServer): Promise<string> {
  const started = Date.now();
  const admin = createPool(server.url("postgres"), { max: 1, name: "kiteq-bench" });
  try {
    await admin.query("CREATE TABLE IF NOT EXISTS kiteq_bench_wal (x int)");
    for (let i = 0; i < PREPARED_WAL_SEGMENTS; i++) {
      // A switch does nothing unless WAL was written since the last one.
      await admin.query("INSERT INTO kiteq_bench_wal VALUES (1)");
      await admin.query("SELECT pg_switch_wal()");
    }
    await admin.query("DROP TABLE kiteq_bench_wal");
    await admin.query("CHECKPOINT");
    const { rows } = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_ls_waldir()");
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    return `WAL prepared as a running store's: ${PREPARED_WAL_SEGMENTS} segments written and recycled (${rows[0]?.n ?? 0} in pg_wal, ${seconds} s; --fresh-wal 1 measures a new store)`;
  } finally {
    await admin.end();
  }
}

/**
 * Run `fn` in a fresh environment (`options`: BenchEnv.create's) and always clean up, also on
 * SIGINT/SIGTERM (then exit with 128 + signal number), including a signal while PostgreSQL is still
 * starting. After a signal `env.interrupted` is set and `env.defer` throws, so `fn` starts nothing more.
 */
export async function withEnv<T>(
  label: string,
  options: { settings?: Record<string, string>; freshWal?: boolean },
  fn: (env: BenchEnv) => Promise<T>,
): Promise<T> {
  let env: BenchEnv | undefined;
  let signalled: NodeJS.Signals | undefined;
  const exitCode = (signal: NodeJS.Signals) => (signal === "SIGINT" ? 130 : 143);
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled !== undefined) return;
    signalled = signal;
    console.error(`\nbench: ${signal}: cleaning up`);
    if (env === undefined) return; // still starting: cleaned up below once create() settles
    env.interrupted = signal;
    void env.close().finally(() => process.exit(exitCode(signal)));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    env = await BenchEnv.create(label, options.settings, options.freshWal === true);
  } catch (err) {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    throw err;
  }
  if (signalled !== undefined) {
    env.interrupted = signalled;
    await env.close();
    process.exit(exitCode(signalled));
  }
  console.error(`bench: PostgreSQL on port ${env.pg.port}, temp dir ${env.dir}`);
  try {
    return await fn(env);
  } finally {
    await env.close();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
