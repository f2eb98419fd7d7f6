import { fork } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { nowMs, sleep } from "../../../src/bench/stats.js";

const CHILD = path.resolve(import.meta.dirname, "../../support/clock-child.ts");

describe("the bench clock (nowMs)", () => {
  // Every process of a boot reads the same CLOCK_MONOTONIC: no origin of its own to disagree on.
  it("is the system's monotonic clock, not one with an origin per process", () => {
    const a = Number(process.hrtime.bigint()) / 1e6;
    const t = nowMs();
    const b = Number(process.hrtime.bigint()) / 1e6;
    expect(t).toBeGreaterThanOrEqual(a);
    expect(t).toBeLessThanOrEqual(b);
  });

  // The compare suite's consumer child stamps when it handled a message the bench process stamped
  // when it sent it: both readings must come from one clock. A child started seconds after this
  // process reads, when asked, a time between this process's readings before the question and
  // after the answer (an IPC round trip apart). With a clock taken from the wall clock at each
  // process's start (performance.timeOrigin), a virtual machine whose wall clock drifts from its
  // monotonic one by a few ms a second put the child's reading 10 ms after this process's second.
  it("reads the same time in a child process started later", async () => {
    await sleep(3_000);
    const child = fork(CHILD, [], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    try {
      const answers: unknown[] = [];
      let wake: (() => void) | undefined;
      child.on("message", (m) => {
        answers.push(m);
        wake?.();
      });
      const next = () =>
        new Promise<unknown>((resolve) => {
          const take = () => {
            if (answers.length > 0) resolve(answers.shift());
            else wake = take;
          };
          take();
        });
      expect(await next()).toBe("ready");
      for (let i = 0; i < 5; i++) {
        const before = nowMs();
        child.send("now?");
        const theirs = Number(await next());
        const after = nowMs();
        expect(theirs).toBeGreaterThanOrEqual(before);
        expect(theirs).toBeLessThanOrEqual(after);
      }
    } finally {
      child.kill();
    }
  }, 30_000);
});
