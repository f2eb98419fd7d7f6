/**
 * How to reach an embedded PostgreSQL: its superuser password, kept in a 0600 file in its data
 * directory (random, made at initialisation or when an old data directory still had the fixed
 * password postgres/postgres), and where a running one listens (PostgreSQL's own postmaster.pid).
 * The CLI uses these to work on a running broker's database; `db-url` prints the URL.
 */
import { randomBytes } from "node:crypto";
import { chmod, readFile, realpath, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { ErrorCode, KiteqError } from "../errors.js";

/** The superuser of the embedded server. */
export const EMBEDDED_USER = "postgres";

/** Password of data directories initialised before the password file existed. */
export const LEGACY_PASSWORD = "postgres";

/** The password file, in the cluster directory (mode 0600, owned by the broker's user). */
export const PASSWORD_FILE = "kiteq-password";

/** A password written but not yet known to be the server's (see rotatePassword). */
const PENDING_SUFFIX = ".new";

/** A fresh random password: 32 URL-safe characters (192 bits). */
export function newPassword(): string {
  return randomBytes(24).toString("base64url");
}

/** Path of the password file of a cluster directory. */
export function passwordFile(clusterDir: string): string {
  return path.join(clusterDir, PASSWORD_FILE);
}

async function readSecret(file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, "utf8")).trim();
    return text === "" ? undefined : text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `cannot read the embedded PostgreSQL's password file ${file} (${(err as NodeJS.ErrnoException).code}): ` +
        "run this as the user the broker runs as",
      { path: file },
      { cause: err },
    );
  }
}

/** Writes `password` to `file`, mode 0600 (also when the file existed with another mode). */
export async function writePasswordFile(file: string, password: string): Promise<void> {
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
}

/** One password to try, and where it came from. */
export interface PasswordCandidate {
  readonly password: string;
  readonly source: "file" | "pending" | "legacy";
}

/**
 * The passwords to try, best first: the password file; a pending one (a rotation that stopped
 * between ALTER ROLE and the rename); the old fixed password when there is no file at all.
 */
export async function passwordCandidates(clusterDir: string): Promise<PasswordCandidate[]> {
  const file = passwordFile(clusterDir);
  const current = await readSecret(file);
  const pending = await readSecret(`${file}${PENDING_SUFFIX}`);
  const out: PasswordCandidate[] = [];
  if (current !== undefined) out.push({ password: current, source: "file" });
  if (pending !== undefined) out.push({ password: pending, source: "pending" });
  if (current === undefined) out.push({ password: LEGACY_PASSWORD, source: "legacy" });
  return out;
}

/**
 * Gives the server a new random password and records it: written to `<file>.new` first, then
 * `alter(password)` (ALTER ROLE), then renamed over the file, so a stop at any point leaves a
 * password that works among the candidates.
 */
export async function rotatePassword(
  clusterDir: string,
  alter: (password: string) => Promise<void>,
): Promise<string> {
  const file = passwordFile(clusterDir);
  const password = newPassword();
  await writePasswordFile(`${file}${PENDING_SUFFIX}`, password);
  await alter(password);
  await rename(`${file}${PENDING_SUFFIX}`, file);
  return password;
}

/** Makes a pending password (known to work) the recorded one. */
export async function adoptPendingPassword(clusterDir: string): Promise<void> {
  const file = passwordFile(clusterDir);
  await rename(`${file}${PENDING_SUFFIX}`, file);
  await chmod(file, 0o600);
}

/** Removes a pending password file that did not work. */
export async function dropPendingPassword(clusterDir: string): Promise<void> {
  await rm(`${passwordFile(clusterDir)}${PENDING_SUFFIX}`, { force: true });
}

/** Where a running embedded server listens, from its postmaster.pid. */
export interface RunningServer {
  readonly pid: number;
  readonly port: number;
  /** Its Unix socket directory, if it has one. */
  readonly socketDir: string | undefined;
}

/**
 * The server running on `clusterDir` (postmaster.pid naming a live process), or undefined.
 * `permissionMeansAlive`: a process we may not signal (EPERM) counts as alive.
 */
export async function runningServer(clusterDir: string): Promise<RunningServer | undefined> {
  let lines: string[];
  try {
    lines = (await readFile(path.join(clusterDir, "postmaster.pid"), "utf8")).split("\n");
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid, true)) return undefined;
  const port = Number(lines[3]);
  const socketDir = lines[4]?.trim();
  return { pid, port: Number.isInteger(port) ? port : 0, socketDir: socketDir ? socketDir : undefined };
}

/** True when `pid` is a live process (EPERM counts as alive when asked). */
export function isAlive(pid: number, permissionMeansAlive = false): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return permissionMeansAlive && (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** postgres:// URL of `database` over loopback TCP with the superuser's password. */
export function embeddedTcpUrl(port: number, password: string, database: string): string {
  return `postgres://${EMBEDDED_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

/**
 * The URL a second node (--db) or psql uses for the embedded PostgreSQL under `clusterDir`: the
 * running server's port, else `pinnedPort` (--pg-port) if set. Throws StoreFailed saying what to
 * do when there is no password file yet, or no port to name.
 */
export async function embeddedDatabaseUrl(
  clusterDir: string,
  database: string,
  pinnedPort: number,
): Promise<{ url: string; running: boolean }> {
  let dir: string;
  try {
    dir = await realpath(clusterDir);
  } catch {
    dir = clusterDir;
  }
  const password = await readSecret(passwordFile(dir));
  if (password === undefined) {
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `no password file in ${dir}: start the broker once (npm start) to initialise its embedded PostgreSQL`,
      { path: dir },
    );
  }
  const running = await runningServer(dir);
  if (running !== undefined && running.port > 0) {
    return { url: embeddedTcpUrl(running.port, password, database), running: true };
  }
  if (pinnedPort > 0) return { url: embeddedTcpUrl(pinnedPort, password, database), running: false };
  throw new KiteqError(
    ErrorCode.StoreFailed,
    `the embedded PostgreSQL in ${dir} is not running and its port is chosen at each start: ` +
      "start the broker, or pin the port with --pg-port (KITEQ_PG_PORT)",
    { path: dir },
  );
}

/**
 * The parent of process `pid` when that parent is a live Node.js process (a broker or CLI still
 * owns the server), else undefined: a postgres whose broker died was reparented to init or a
 * subreaper. Linux (/proc); elsewhere undefined, and the server is taken for an orphan.
 */
export async function liveNodeParent(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ")".
  const ppid = Number(stat?.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  if (!Number.isSafeInteger(ppid) || ppid <= 1 || ppid === process.pid) return undefined;
  const cmdline = await readFile(`/proc/${ppid}/cmdline`, "utf8").catch(() => "");
  const program = path.basename(cmdline.split("\0")[0] ?? "");
  return program.startsWith("node") ? ppid : undefined;
}
