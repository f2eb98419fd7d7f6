/**
 * Broker nodes as child processes (the real CLI), for end-to-end tests over TCP.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { BROKER_NODE_FLAGS } from "../../src/server/node-flags.js";
import { freePort } from "../../src/store/embedded.js";
import { builtEntry } from "./built-src.js";

const ROOT = path.resolve(import.meta.dirname, "../..");

/** A broker child process. */
/** Two-phase commit check-backs every second (first after 1 s, never further apart): for 2PC tests. */
export const FAST_TX_CHECKS: readonly string[] = [
  "--tx-check-seconds",
  "1",
  "--tx-check-max-seconds",
  "1",
  "--tx-check-backoff",
  "1",
];

export interface BrokerProcess {
  port: number;
  host: string;
  /** Port of its embedded PostgreSQL (when started without --db). */
  embeddedPgPort: number | undefined;
  child: ChildProcess;
  /** Every log line so far (parsed JSON or raw). */
  logs: Record<string, unknown>[];
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** kill -9. */
  kill(): Promise<void>;
}

/** Start `kiteq-pg serve` with `args`; resolves once it logged "broker started". */
export async function startBrokerProcess(
  args: string[],
  options: {
    env?: NodeJS.ProcessEnv;
    port?: number;
    timeoutMs?: number;
    /** The CLI's main module (default: this checkout's, built) and the working directory. */
    entry?: string;
    cwd?: string;
    /** Admin address (default "0": none). */
    admin?: string;
  } = {},
): Promise<BrokerProcess> {
  const port = options.port ?? (await freePort());
  const child = spawn(
    process.execPath,
    [
      ...BROKER_NODE_FLAGS,
      options.entry ?? builtEntry("cli/main.ts"),
      "serve",
      "--bind",
      `127.0.0.1:${port}`,
      "--admin",
      options.admin ?? "0",
      ...args,
    ],
    {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, KITEQ_LOG_LEVEL: "debug", VITEST: undefined, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const logs: Record<string, unknown>[] = [];
  let embeddedPgPort: number | undefined;
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const started = new Promise<void>((resolve, reject) => {
    let buf = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          entry = { raw: line };
        }
        logs.push(entry);
        if (entry.msg === "embedded PostgreSQL started") embeddedPgPort = entry.port as number;
        if (entry.msg === "broker started") resolve();
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8");
    });
    void exited.then((code) =>
      reject(new Error(`broker exited with ${code} before start: ${stderr.slice(-2000)}`)),
    );
  });
  const timeout = options.timeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    started,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`broker not started within ${timeout} ms: ${stderr}`)),
        timeout,
      );
    }),
  ])
    .catch((err: unknown) => {
      // Never leave a half-started broker behind.
      child.kill("SIGKILL");
      throw err;
    })
    .finally(() => clearTimeout(timer));
  return {
    port,
    host: "127.0.0.1",
    get embeddedPgPort() {
      return embeddedPgPort;
    },
    child,
    logs,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}
