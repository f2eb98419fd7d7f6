import { describe, expect, it } from "vitest";
import { PeriodicJob } from "../../../src/maintenance/periodic.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("PeriodicJob", () => {
  it("never overlaps itself: ticks during a slow run are skipped, not queued", async () => {
    let active = 0;
    let peak = 0;
    let runs = 0;
    const job = new PeriodicJob(
      "slow",
      10,
      async () => {
        active++;
        peak = Math.max(peak, active);
        runs++;
        await sleep(120);
        active--;
      },
      () => undefined,
    );
    job.start(true);
    await sleep(400);
    await job.stop();
    expect(peak).toBe(1);
    expect(job.stats.maxConcurrent).toBe(1);
    // ~40 ticks in 400 ms, each run 120 ms: a handful of runs, the rest skipped.
    expect(runs).toBeGreaterThanOrEqual(2);
    expect(runs).toBeLessThanOrEqual(5);
    expect(job.stats.skipped).toBeGreaterThan(20);
  });

  it("stop() waits for the run in flight, which sees isStopped() and ends its loop", async () => {
    let batches = 0;
    const job = new PeriodicJob(
      "loop",
      1000,
      async (stopped) => {
        while (!stopped()) {
          batches++;
          await sleep(5);
        }
      },
      () => undefined,
    );
    job.start(true);
    await sleep(50);
    const t0 = Date.now();
    await job.stop();
    expect(Date.now() - t0).toBeLessThan(50);
    expect(job.busy).toBe(false);
    const after = batches;
    await sleep(30);
    expect(batches).toBe(after);
  });

  it("a run that throws is reported and the schedule goes on", async () => {
    const errors: unknown[] = [];
    let n = 0;
    const job = new PeriodicJob(
      "flaky",
      10,
      async () => {
        n++;
        if (n === 1) throw new Error("boom");
      },
      (err) => errors.push(err),
    );
    job.start(true);
    await sleep(60);
    await job.stop();
    expect(errors).toHaveLength(1);
    expect(job.stats.failures).toBe(1);
    expect(job.stats.runs).toBeGreaterThan(1);
  });
});
