/**
 * A kiteq-pg broker as a child process (the real CLI over TCP), as the bench measures it:
 * `node --import tsx src/cli/main.ts serve --db URL --recieve-permits-per-second 0 --admin 0`
 * (plus `--registry static --node-id ID` for a node of several on one database: nodes.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { BROKER_NODE_FLAGS } from "../server/node-flags.js";
import { freePort } from "../store/embedded.js";
import { ROOT } from "./environment.js";
import { peakRssKb } from "./stats.js";

/** A running broker child. */
export interface BrokerChild {
  host: string;
  port: number;
  pid: number;
  /** The --node-id given, or undefined (the broker's default: host:port). */
  nodeId: string | undefined;
  /** VmHWM of the broker process, in kB (while it runs). */
  peakRssKb(): number | undefined;
  /** kill -9, resolved once it exited. */
  kill(): Promise<void>;
  /** SIGTERM (graceful stop) and wait; SIGKILL after `graceMs`. Resolves with the exit code (null: killed). */
  stop(graceMs?: number): Promise<number | null>;
}

/** The flags the bench always gives the broker. */
export function brokerFlags(dbUrl: string, dataDir: string, port: number): string[] {
  return [
    "--bind",
    `127.0.0.1:${port}`,
    "--db",
    dbUrl,
    "--data-dir",
    dataDir,
    "--admin",
    "0",
    "--recieve-permits-per-second",
    "0",
    "--log-level",
    "info",
  ];
}

/** Start a broker on `dbUrl`; resolves once it logged "broker started". */
export async function startBrokerChild(options: {
  dbUrl: string;
  dataDir: string;
  /** Given: `--registry static --node-id ID` (several nodes on one database). */
  nodeId?: string;
  extraArgs?: string[];
  timeoutMs?: number;
  /**
   * Called right after the spawn with a kill (SIGKILL, resolves on exit), so a cleanup that runs
   * while the broker is still starting (SIGINT) can end it too.
   */
  onSpawn?: (kill: () => Promise<void>) => void;
}): Promise<BrokerChild> {
  const port = await freePort();
  const args = [
    ...brokerFlags(options.dbUrl, options.dataDir, port),
    ...(options.nodeId === undefined ? [] : ["--registry", "static", "--node-id", options.nodeId]),
    ...(options.extraArgs ?? []),
  ];
  const child: ChildProcess = spawn(
    process.execPath,
    [...BROKER_NODE_FLAGS, "--import", "tsx", path.join(ROOT, "src/cli/main.ts"), "serve", ...args],
    {
      cwd: ROOT,
      env: { ...process.env, VITEST: undefined, KITEQ_LOG_LEVEL: undefined },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const tail: string[] = [];
  const remember = (line: string) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
  };
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  options.onSpawn?.(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    return exited.then(() => undefined);
  });
  const started = new Promise<void>((resolve, reject) => {
    let buf = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        remember(line);
        if (line.includes('"msg":"broker started"')) resolve();
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => remember(chunk.toString("utf8")));
    void exited.then(() =>
      reject(
        new Error(`broker exited (${child.exitCode ?? child.signalCode}) before start:\n${tail.join("\n")}`),
      ),
    );
  });
  const timeoutMs = options.timeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      started,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`broker not started within ${timeoutMs} ms:\n${tail.join("\n")}`)),
          timeoutMs,
        );
      }),
    ]);
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    throw err;
  } finally {
    clearTimeout(timer);
  }
  const pid = child.pid!;
  return {
    host: "127.0.0.1",
    port,
    pid,
    nodeId: options.nodeId,
    peakRssKb: () => peakRssKb(pid),
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
    async stop(graceMs = 20_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
}
