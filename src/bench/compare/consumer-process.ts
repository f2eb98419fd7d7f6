/**
 * Parent side of consumer-child.ts: spawn it, start and stop its consumer, and pass its handler
 * calls on to the bench's bookkeeping.
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { ROOT } from "../environment.js";
import type { ConsumerChildConfig, FromChild, ToChild } from "./consumer-child.js";
import type { SeenCallback } from "./system.js";

/** A running consumer process. */
export class ConsumerProcess {
  private onSeen: SeenCallback | undefined;
  private waiters: { type: FromChild["type"]; resolve(): void; reject(e: Error): void }[] = [];
  private errors: string[] = [];
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    child.on("message", (m: FromChild) => this.onMessage(m));
    void this.exited.then(() => {
      const err = new Error(
        `consumer process exited (${child.exitCode ?? child.signalCode}) ${this.errors.join("; ")}`,
      );
      for (const w of this.waiters.splice(0)) w.reject(err);
    });
  }

  /** Spawn the child and wait until its consumer is prepared (connected, not yet working). */
  static async spawn(config: ConsumerChildConfig): Promise<ConsumerProcess> {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(ROOT, "src/bench/compare/consumer-child.ts")],
      {
        cwd: ROOT,
        env: { ...process.env, BENCH_CONSUMER_CONFIG: JSON.stringify(config) },
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      },
    );
    const p = new ConsumerProcess(child);
    try {
      await p.waitFor("ready");
    } catch (err) {
      await p.kill();
      throw err;
    }
    return p;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Errors the child reported (pg-boss "error" events and the like). */
  get reportedErrors(): readonly string[] {
    return this.errors;
  }

  /** Start consuming; every handler call goes to `onSeen`. */
  async work(onSeen: SeenCallback): Promise<void> {
    this.onSeen = onSeen;
    const working = this.waitFor("working");
    this.post({ type: "work" });
    await working;
  }

  /**
   * Stop consuming, the process and the system's client kept (work() again resumes, warm); every
   * handler call made so far is reported before this resolves.
   */
  async pause(): Promise<void> {
    const paused = this.waitFor("paused");
    this.post({ type: "pause" });
    await paused;
  }

  /** Stop the consumer gracefully (every handler call reported before this resolves), then exit. */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const stopped = this.waitFor("stopped");
    this.post({ type: "stop" });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        stopped,
        new Promise<void>((_, reject) => {
          timer = setTimeout(() => reject(new Error("consumer process did not stop in time")), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      await this.kill(2000);
    }
  }

  /** Wait for exit; SIGKILL after `graceMs`. */
  async kill(graceMs = 0): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const t = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
      await this.exited;
      clearTimeout(t);
    }
  }

  private post(m: ToChild): void {
    this.child.send(m);
  }

  private waitFor(type: FromChild["type"]): Promise<void> {
    return new Promise((resolve, reject) => this.waiters.push({ type, resolve, reject }));
  }

  private onMessage(m: FromChild): void {
    if (m.type === "seen") {
      const cb = this.onSeen;
      if (cb) for (let i = 0; i < m.s.length; i++) cb(m.s[i]!, m.t[i]!, m.at[i]!);
      return;
    }
    if (m.type === "error") {
      this.errors.push(m.message);
      if (this.errors.length > 20) this.errors.shift();
      return;
    }
    const i = this.waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve();
  }
}
