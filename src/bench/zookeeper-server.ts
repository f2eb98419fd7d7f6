/**
 * A real, throwaway ZooKeeper server for tests and benches: Debian's `zookeeper` package run
 * standalone on a free loopback port with its own temporary data directory.
 * (`npm test` runs scripts/prepare-test-env.mjs first, which installs it when missing.)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { closeZooKeeper, connectZooKeeper } from "../registry/zk-connect.js";
import { zkCreate, zkRemove } from "../registry/zk-ops.js";

/** A running test ZooKeeper. */
export interface TestZooKeeper {
  /** `127.0.0.1:port`, for node-zookeeper-client or the registry. */
  connectString: string;
  port: number;
  dataDir: string;
  /** Kill the JVM, wait for it to exit and remove the data directory. Idempotent. */
  stop(): Promise<void>;
  /** kill -9 the JVM and return at once (the data directory stays, for restart()). */
  kill(): void;
  /** Stop (if running) and start again on the same port; `wipeData` forgets every node and session. */
  restart(options?: { wipeData?: boolean }): Promise<void>;
}

const CLASSPATH = "/usr/share/zookeeper/*:/usr/share/zookeeper/lib/*:/usr/share/java/zookeeper.jar";
const READY_TIMEOUT_MS = 20_000;

/** Start a standalone ZooKeeper (tickTime 500 ms: session timeouts from 1 s to 60 s allowed). */
export async function startZooKeeper(): Promise<TestZooKeeper> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiteq-zk-"));
  const dataDir = path.join(dir, "data");
  const config = path.join(dir, "zoo.cfg");
  const logFile = path.join(dir, "zookeeper.log");
  await writeFile(
    config,
    [
      "tickTime=500",
      `dataDir=${dataDir}`,
      `clientPort=${port}`,
      "clientPortAddress=127.0.0.1",
      "minSessionTimeout=1000",
      "maxSessionTimeout=60000",
      "maxClientCnxns=0",
      "admin.enableServer=false",
      "",
    ].join("\n"),
  );

  let child: ChildProcess | undefined;
  let stopped = false;
  const killOnExit = () => child?.kill("SIGKILL");
  process.once("exit", killOnExit);

  const launch = async (): Promise<void> => {
    const fd = openSync(logFile, "a");
    const proc = spawn(
      "java",
      [
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-cp",
        CLASSPATH,
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        config,
      ],
      { stdio: ["ignore", fd, fd] },
    );
    closeSync(fd);
    child = proc;
    await waitReady(proc, `127.0.0.1:${port}`, logFile);
  };

  const halt = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGKILL");
    await exited;
  };

  await launch().catch(async (err: unknown) => {
    await halt();
    await rm(dir, { recursive: true, force: true });
    process.removeListener("exit", killOnExit);
    throw err;
  });

  return {
    connectString: `127.0.0.1:${port}`,
    port,
    dataDir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await halt();
      process.removeListener("exit", killOnExit);
      await rm(dir, { recursive: true, force: true });
    },
    kill() {
      child?.kill("SIGKILL");
    },
    async restart(options = {}) {
      if (stopped) throw new Error("restart() after stop()");
      await halt();
      if (options.wipeData === true) await rm(dataDir, { recursive: true, force: true });
      await launch();
    },
  };
}

/**
 * Poll `cond` every 50 ms until it returns true (or a truthy value, which is returned); throws
 * after `timeoutMs` with `what` in the message.
 */
export async function waitFor<T>(
  cond: () => T | Promise<T>,
  timeoutMs: number,
  what = "condition",
): Promise<Exclude<T, false | undefined | null | 0 | "">> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await cond();
    if (value) return value as Exclude<T, false | undefined | null | 0 | "">;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A port nothing listens on right now (bound and released on 127.0.0.1). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Ready means a real client can open a session and create + delete a node (the four-letter
 * `ruok` answers before the server serves sessions, so it is not used).
 */
async function waitReady(proc: ChildProcess, connectString: string, logFile: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(
        `ZooKeeper exited (${proc.exitCode ?? proc.signalCode}) during start:\n${await tail(logFile)}`,
      );
    }
    try {
      const client = await connectZooKeeper(connectString, {
        sessionTimeoutMs: 4_000,
        connectTimeoutMs: 1_500,
        retries: 0,
      });
      try {
        const probe = `/zk-harness-probe-${process.pid}-${Date.now()}`;
        await zkCreate(client, probe, { ephemeral: true, timeoutMs: 2_000 });
        await zkRemove(client, probe, { timeoutMs: 2_000 });
        return;
      } finally {
        await closeZooKeeper(client, 1_000);
      }
    } catch (err) {
      lastError = err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(
    `ZooKeeper on ${connectString} not ready after ${READY_TIMEOUT_MS / 1000} s (${String(lastError)}):\n${await tail(logFile)}`,
  );
}

async function tail(file: string): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").slice(-20).join("\n");
}
