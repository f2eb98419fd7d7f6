/**
 * An interrupted `npm test` leaves no PostgreSQL behind. The run's server runs in a process group
 * of its own (so Ctrl-C never reaches it) and vitest exits on SIGINT without running global
 * teardowns: before, every Ctrl-C left a server running, with its folder under .tmp. Now the
 * run stops it at exit, and the next run stops and removes what a SIGKILL left
 * (test/support/stale-servers.ts). Each case runs a nested vitest run with the suite's global
 * setup (test/fixtures/interrupted-run).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isAlive } from "../../src/store/embedded-access.js";
import { ROOT } from "../support/built-src.js";
import { waitFor } from "../support/consumers.js";
import { removeStaleTestServers, TEST_SERVER_PREFIX } from "../support/stale-servers.js";

interface NestedRun {
  child: ChildProcess;
  exited: Promise<void>;
  dataDir: string;
  postmasterPid: number;
}

const started: NestedRun[] = [];

/** Starts a nested run in a process group of its own, as a terminal would, and waits for its server. */
async function startNestedRun(): Promise<NestedRun> {
  const child = spawn(
    process.execPath,
    ["node_modules/vitest/vitest.mjs", "run", "--config", "test/fixtures/interrupted-run/vitest.config.ts"],
    {
      cwd: ROOT,
      detached: true,
      // The sources for child processes are built by the outer run (and must not be rewritten
      // under it).
      env: { ...process.env, VITEST: undefined, TEST_KITEQ_DIST_BUILT: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let output = "";
  let dataDir: string | undefined;
  for (const stream of [child.stdout, child.stderr]) {
    stream?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
      dataDir ??= /FIXTURE-DATA-DIR (\S+)/.exec(output)?.[1];
    });
  }
  const run = { child, exited, dataDir: "", postmasterPid: 0 };
  started.push(run);
  await waitFor(
    () => dataDir !== undefined || child.exitCode !== null,
    90_000,
    "the nested run's PostgreSQL",
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${output.slice(-2000)}`);
  });
  if (dataDir === undefined)
    throw new Error(`the nested run exited before its test:\n${output.slice(-2000)}`);
  run.dataDir = dataDir;
  run.postmasterPid = Number((await readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
  expect(isAlive(run.postmasterPid)).toBe(true);
  return run;
}

afterEach(async () => {
  for (const run of started.splice(0)) {
    if (run.child.exitCode === null && run.child.signalCode === null) {
      try {
        process.kill(-run.child.pid!, "SIGKILL");
      } catch {}
    }
    if (run.postmasterPid > 0 && isAlive(run.postmasterPid)) {
      process.kill(run.postmasterPid, "SIGQUIT");
      await waitFor(() => !isAlive(run.postmasterPid), 15_000, "the nested run's PostgreSQL to quit");
    }
    // A failed case's folder (a placed data directory is left to the sweep of a later run).
    const folder = path.dirname(run.dataDir);
    if (run.dataDir !== "" && folder.startsWith(path.join(ROOT, ".tmp", TEST_SERVER_PREFIX))) {
      await rm(folder, { recursive: true, force: true });
    }
  }
});

describe("an interrupted test run", () => {
  it("Ctrl-C (SIGINT to the run's process group) stops the run's PostgreSQL and removes its data", async () => {
    const run = await startNestedRun();
    process.kill(-run.child.pid!, "SIGINT");
    await run.exited;
    await waitFor(() => !isAlive(run.postmasterPid), 15_000, "the nested run's PostgreSQL to stop");
    await waitFor(() => !existsSync(run.dataDir), 15_000, "the nested run's data directory to be removed");
  });

  it("a server a SIGKILL'd run left is stopped and removed by the next run's sweep", async () => {
    const run = await startNestedRun();
    process.kill(-run.child.pid!, "SIGKILL");
    await run.exited;
    // Nothing ran at exit: the server goes on, reparented.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(isAlive(run.postmasterPid)).toBe(true);
    // What the next run's global setup does first (this run's own server and the other run's
    // are owned by live processes and stay).
    await removeStaleTestServers(path.join(ROOT, ".tmp"));
    expect(isAlive(run.postmasterPid)).toBe(false);
    expect(existsSync(run.dataDir)).toBe(false);
  });
});
