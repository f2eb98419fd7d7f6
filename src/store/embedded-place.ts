/**
 * Where the embedded PostgreSQL can run when the broker is root. PostgreSQL refuses to run as
 * root, so it runs as the `postgres` user, who must reach its binaries and its data directory.
 * In a clone inside a 0700 folder (as /root is) it reaches neither: the binaries are then copied
 * once to /var/lib/kiteq-pg/postgres-<version>, and a new data directory is made under
 * /var/lib/kiteq-pg/data and linked from where it was asked for (with a `.link` note beside it
 * naming that path). Every move is logged.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import {
  chmod,
  chown,
  cp,
  lstat,
  mkdir,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  rmdir,
  symlink,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { ErrorCode, KiteqError } from "../errors.js";
import type { Logger } from "../log.js";

/** The user PostgreSQL runs as when the broker is root. */
export const POSTGRES_USER = "postgres";

/** Where root keeps what the postgres user must reach (root-owned, 0755). */
export const RUNTIME_BASE = "/var/lib/kiteq-pg";

/** A placed data directory `<dir>` has a note `<dir>.link` naming the path linked to it. */
export const LINK_NOTE_SUFFIX = ".link";

/** uid/gid to run PostgreSQL as: empty unless the broker is root. */
export interface PostgresIds {
  uid?: number;
  gid?: number;
}

/**
 * The ids of the `postgres` user when we are root (creating the user when missing), else {}.
 * Throws StoreFailed with what to do when there is no such user and it cannot be created.
 */
export function postgresUserIds(logger: Logger): PostgresIds {
  if (process.getuid?.() !== 0) return {};
  const lookup = (): PostgresIds | undefined => {
    try {
      const uid = Number(
        execFileSync("id", ["-u", POSTGRES_USER], { encoding: "utf8", stdio: "pipe" }).trim(),
      );
      const gid = Number(
        execFileSync("id", ["-g", POSTGRES_USER], { encoding: "utf8", stdio: "pipe" }).trim(),
      );
      return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
    } catch {
      return undefined;
    }
  };
  const found = lookup();
  if (found !== undefined) return found;
  logger.info("running as root: creating the system user postgres for the embedded PostgreSQL");
  try {
    execFileSync("groupadd", ["--system", POSTGRES_USER], { stdio: "ignore" });
  } catch {
    // The group may exist already; useradd says if something is really wrong.
  }
  try {
    execFileSync(
      "useradd",
      ["--system", "--gid", POSTGRES_USER, "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_USER],
      { stdio: "ignore" },
    );
  } catch {
    // Checked below.
  }
  const created = lookup();
  if (created !== undefined) return created;
  throw new KiteqError(
    ErrorCode.StoreFailed,
    "PostgreSQL cannot run as root and there is no postgres user to run it as (useradd failed): " +
      "create one (useradd --system postgres), run the broker as another user, or pass --db postgres://...",
    { user: POSTGRES_USER },
  );
}

/** True when the postgres user can search (and with `write`, also write) `p` and every folder above it. */
export function postgresCanReach(p: string, ids: PostgresIds, write = false): boolean {
  if (ids.uid === undefined) return true;
  const test = write ? 'test -x "$1" && test -w "$1"' : 'test -x "$1"';
  const r = spawnSync("/bin/sh", ["-c", test, "sh", p], {
    uid: ids.uid,
    gid: ids.gid,
    cwd: "/",
    stdio: "ignore",
    timeout: 10_000,
  });
  return r.status === 0;
}

/**
 * mkdir -p of the data directory, one level at a time, failing with one line naming --data-dir.
 * Node's recursive mkdir loops for ever on a path it cannot create under /proc (ENOENT, then
 * EEXIST on the parent), and a file in the way gave KQ_INTERNAL EEXIST / ENOTDIR.
 */
export async function makeDataDirectory(dir: string, mode?: number): Promise<string[]> {
  const missing: string[] = [];
  let at = path.resolve(dir);
  for (;;) {
    const found = await lstat(at).then(
      (st) => st,
      (err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? undefined : err),
    );
    if (found instanceof Error) throw dataDirError(dir, at, found);
    if (found !== undefined) {
      // A symlink (a placed data directory, or the operator's own) is followed.
      const target = found.isSymbolicLink() ? await realpath(at).catch(() => undefined) : at;
      const isDir = target !== undefined && (found.isDirectory() || (await lstat(target)).isDirectory());
      if (!isDir) {
        throw new KiteqError(
          ErrorCode.ConfigInvalid,
          `the data directory ${dir} (--data-dir) cannot be made: ${at} is ${target === undefined ? "a broken link" : "not a directory"}`,
          { key: "dataDir", path: at },
        );
      }
      break;
    }
    missing.push(at);
    const up = path.dirname(at);
    if (up === at) break;
    at = up;
  }
  for (const p of missing.reverse()) {
    await mkdir(p, mode === undefined ? {} : { mode }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw dataDirError(dir, p, err);
    });
  }
  return missing;
}

function dataDirError(dir: string, p: string, err: NodeJS.ErrnoException): KiteqError {
  return new KiteqError(
    ErrorCode.ConfigInvalid,
    `the data directory ${dir} (--data-dir) cannot be made: creating ${p} failed (${err.code ?? err.message})`,
    { key: "dataDir", path: p },
  );
}

function unreachable(what: string, p: string): KiteqError {
  return new KiteqError(
    ErrorCode.StoreFailed,
    `the embedded PostgreSQL runs as user ${POSTGRES_USER} (the broker is root), who cannot reach ${what} ${p} ` +
      `(a folder above it is not traversable, e.g. 0700): move it under a folder others can traverse ` +
      `(e.g. --data-dir ${RUNTIME_BASE}/data), run the broker as another user, or pass --db postgres://...`,
    { path: p },
  );
}

/**
 * The PostgreSQL build directory (bin, lib, share) the postgres user can run: `nativeDir` itself
 * when reachable (or when we are not root), else a copy under RUNTIME_BASE (made once per version).
 */
export async function placeBinaries(nativeDir: string, ids: PostgresIds, logger: Logger): Promise<string> {
  const binary = path.join(nativeDir, "bin", "postgres");
  if (ids.uid === undefined || postgresCanReach(binary, ids)) return nativeDir;
  let version = "unknown";
  try {
    version = (
      JSON.parse(await readFile(path.join(nativeDir, "..", "package.json"), "utf8")) as { version: string }
    ).version;
  } catch {
    // An unversioned copy is still a copy.
  }
  const target = path.join(RUNTIME_BASE, `postgres-${version}-${process.platform}-${process.arch}`);
  try {
    if (!existsSync(path.join(target, ".complete"))) {
      await makeBase();
      const tmp = `${target}.tmp-${process.pid}`;
      await rm(tmp, { recursive: true, force: true });
      await cp(nativeDir, tmp, { recursive: true, verbatimSymlinks: true });
      await openToOthers(tmp);
      await writeFile(path.join(tmp, ".complete"), `${nativeDir}\n`);
      await rename(tmp, target).catch(async (err: NodeJS.ErrnoException) => {
        await rm(tmp, { recursive: true, force: true });
        // Another process made it first.
        if (!existsSync(path.join(target, ".complete"))) throw err;
      });
    }
  } catch (err) {
    throw new KiteqError(
      ErrorCode.StoreFailed,
      `the postgres user cannot reach the PostgreSQL binaries in ${nativeDir} (a folder above is 0700) ` +
        `and copying them to ${target} failed (${(err as Error).message}): move the clone under a folder others ` +
        "can traverse, run the broker as another user, or pass --db postgres://...",
      { path: target },
      { cause: err },
    );
  }
  if (!postgresCanReach(path.join(target, "bin", "postgres"), ids))
    throw unreachable("the binaries in", target);
  logger.info(
    { from: nativeDir, to: target },
    `the postgres user cannot reach the PostgreSQL binaries in node_modules: running a copy in ${target}`,
  );
  return target;
}

async function makeBase(): Promise<void> {
  await mkdir(path.join(RUNTIME_BASE, "data"), { recursive: true, mode: 0o755 });
  await chmod(RUNTIME_BASE, 0o755);
  await chmod(path.join(RUNTIME_BASE, "data"), 0o755);
}

/** chmod go+r (and go+x where the owner has x) over a tree, symlinks left alone. */
async function openToOthers(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (st.isSymbolicLink()) return;
  const mode = st.mode & 0o7777;
  await chmod(dir, mode | 0o044 | (mode & 0o100 ? 0o011 : 0));
  if (!st.isDirectory()) return;
  for (const entry of await readdir(dir)) await openToOthers(path.join(dir, entry));
}

/**
 * Creates (when needed) the cluster directory asked for and returns its real path, owned by the
 * user PostgreSQL runs as. As root, a directory the postgres user cannot reach is made under
 * RUNTIME_BASE/data instead and linked (symlink) from `requested`; an existing unreachable one
 * holding data is an error saying what to do (its data is never moved behind the operator's back).
 */
export async function placeDataDir(requested: string, ids: PostgresIds, logger: Logger): Promise<string> {
  const parent = path.dirname(requested);
  if (ids.uid === undefined || ids.gid === undefined) {
    await makeDataDirectory(requested, 0o700);
    return realpath(requested);
  }
  const made = await makeDataDirectory(parent);
  // The parent, when this start made it (./data on a first start), is opened for the postgres
  // user. One the operator made is left as it is: a 0700 --data-dir was turned 0755 in silence
  // (and its data went elsewhere anyway, below).
  if (made.includes(path.resolve(parent))) await chmod(parent, 0o755).catch(() => undefined);
  let real: string | undefined;
  try {
    real = await realpath(requested);
  } catch {
    real = undefined;
  }
  if (real !== undefined) {
    if (postgresCanReach(real, ids)) {
      await chown(real, ids.uid, ids.gid);
      return real;
    }
    // A leftover empty directory (an earlier failed start) is made again elsewhere.
    if ((await readdir(real)).length > 0) throw unreachable("its data directory", real);
    await rmdir(real);
  }
  if (postgresCanReach(parent, ids)) {
    await makeDataDirectory(requested, 0o700);
    await chown(requested, ids.uid, ids.gid);
    return realpath(requested);
  }
  const hash = createHash("sha256").update(requested).digest("hex").slice(0, 12);
  const target = path.join(RUNTIME_BASE, "data", `${path.basename(requested)}-${hash}`);
  await makeBase();
  await mkdir(target, { recursive: true, mode: 0o700 });
  await chown(target, ids.uid, ids.gid);
  if (!postgresCanReach(target, ids, true)) throw unreachable("its data directory", target);
  await symlink(target, requested).catch(async (err: NodeJS.ErrnoException) => {
    // Two first starts at once (the same data directory): the other made the same link first.
    if (err.code === "EEXIST" && (await realpath(requested).catch(() => undefined)) === target) return;
    throw err.code === "EEXIST"
      ? new KiteqError(
          ErrorCode.StoreFailed,
          `another process created ${requested} while this node was placing its data directory: start one node on it at a time`,
          { dataDir: requested },
        )
      : err;
  });
  // Beside it (initdb wants an empty directory): which path it serves, for operators and clean-ups.
  await writeFile(`${target}${LINK_NOTE_SUFFIX}`, `${requested}\n`);
  logger.warn(
    { dataDir: requested, placedAt: target },
    `the postgres user cannot reach ${parent} (a folder above it is 0700): the embedded PostgreSQL's data is in ${target}, linked from ${requested}`,
  );
  return target;
}
