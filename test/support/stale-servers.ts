/**
 * The run's PostgreSQL must not outlive an interrupted `npm test`. It runs in a process group of
 * its own (embedded.ts starts it detached, so that a broker's Ctrl-C drains before its store
 * stops), so Ctrl-C never reaches it; and vitest exits on SIGINT without running global
 * teardowns. So: a stop at this process's exit, and a sweep at the next run's start for what a
 * SIGKILL left (a server reparented to init, or a folder whose server is gone).
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { readdir, readFile, realpath, rm, stat } from "node:fs/promises";
import path from "node:path";
import { isAlive, liveNodeParent, runningServer } from "../../src/store/embedded-access.js";
import { LINK_NOTE_SUFFIX, RUNTIME_BASE } from "../../src/store/embedded-place.js";
import { removePlacedDataDir, removePlacedDataDirs } from "./placed-dirs.js";

/** Prefix of the run's server folders under .tmp (global-setup.ts). */
export const TEST_SERVER_PREFIX = "test-pg-";

/** A folder without a server younger than this may be a run starting now: left alone. */
const STARTING_GRACE_MS = 60 * 60_000;

/**
 * Waits for `pid` to exit (at most a minute), then removes `dir` and the placed data directory
 * (a root run in a 0700 folder), if any. Runs detached: the process that started it is exiting.
 */
const REMOVER = `
const [pid, dir, dataDir, placedBase, noteSuffix] = process.argv.slice(1);
const { rmSync } = require("node:fs");
const alive = () => { try { process.kill(Number(pid), 0); return true; } catch { return false; } };
const deadline = Date.now() + 60000;
const tick = () => {
  if (alive() && Date.now() < deadline) return setTimeout(tick, 100);
  if (alive()) return;
  rmSync(dir, { recursive: true, force: true });
  if (!dataDir.startsWith(dir + "/") && dataDir.startsWith(placedBase + "/")) {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(dataDir + noteSuffix, { force: true });
  }
};
tick();`;

/** Reads the postmaster's pid of `dataDir` (synchronously: used at exit). */
function postmasterPidSync(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Stops the server on `dataDir` (fast shutdown) when this process exits before its teardown ran,
 * and removes `dir` once the server is gone. Returns the function that cancels this (call it
 * once the teardown stopped the server).
 */
export function stopAtExit(dataDir: string, dir: string): () => void {
  const placedBase = path.join(RUNTIME_BASE, "data");
  const onExit = () => {
    const pid = postmasterPidSync(dataDir);
    if (pid === undefined || !isAlive(pid)) return;
    try {
      process.kill(pid, "SIGINT");
    } catch {
      return;
    }
    spawn(process.execPath, ["-e", REMOVER, String(pid), dir, dataDir, placedBase, LINK_NOTE_SUFFIX], {
      detached: true,
      stdio: "ignore",
    }).unref();
  };
  process.once("exit", onExit);
  return () => process.off("exit", onExit);
}

/** True when process `pid` is a postgres server on `dataDir` (not a reused pid). */
async function isPostgresOn(pid: number, dataDir: string): Promise<boolean> {
  const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
  const d = cmdline.indexOf("-D");
  return path.basename(cmdline[0] ?? "").startsWith("postgres") && d >= 0 && cmdline[d + 1] === dataDir;
}

/**
 * Removes the server folders under `base` that an interrupted run left: a server whose owner is
 * gone is stopped first; a server still owned by a live Node.js process (another run) and a young
 * folder without a server (a run starting) are left alone. Returns the folders removed.
 */
export async function removeStaleTestServers(base: string): Promise<string[]> {
  const names = await readdir(base).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names.filter((n) => n.startsWith(TEST_SERVER_PREFIX))) {
    const dir = path.join(base, name);
    const link = path.join(dir, "pg");
    const dataDir = await realpath(link).catch(() => link);
    const server = await runningServer(dataDir);
    if (server !== undefined) {
      if (!(await isPostgresOn(server.pid, dataDir))) continue;
      if ((await liveNodeParent(server.pid)) !== undefined) continue;
      process.kill(server.pid, "SIGINT");
      const deadline = Date.now() + 30_000;
      while (isAlive(server.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (isAlive(server.pid)) continue;
    } else {
      // No server: a leftover, unless it is a run that has not started its server yet.
      const hasPid = existsSync(path.join(dataDir, "postmaster.pid"));
      const modifiedMs = await stat(dir)
        .then((s) => s.mtimeMs)
        .catch(() => 0);
      if (!hasPid && Date.now() - modifiedMs < STARTING_GRACE_MS) continue;
    }
    await rm(dir, { recursive: true, force: true });
    await removePlacedDataDir(dataDir, dir);
    removed.push(dir);
  }
  await removePlacedDataDirs(`${path.resolve(base)}${path.sep}`);
  return removed;
}
