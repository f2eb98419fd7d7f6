/**
 * The three workloads every compare system runs, in order, on its own fresh database:
 * burn-down (enqueue N with no consumer, then consume them all), steady (a fixed offered rate
 * with the consumer running) and flat out (producers and consumer as fast as they go).
 * Burn-down must hand every message to the handler exactly once; the later phases must lose none.
 */
import { flatOut, paced } from "../drivers.js";
import type { BenchEnv } from "../environment.js";
import type { Progress } from "../output.js";
import { type LatencySummary, nowMs, peakRssKb, round, sleep } from "../stats.js";
import type { SystemUnderTest } from "./system.js";
import { PhaseRouter, type PhaseTracker } from "./tracker.js";

/** Sizes of the workloads. */
export interface PhaseOptions {
  messages: number;
  rate: number;
  steadySeconds: number;
  flatSeconds: number;
  warmupSeconds: number;
  /** Concurrent enqueues (connections x window) for fill and flat out. */
  loops: number;
  drainSeconds: number;
}

/** Delivery counts of a phase. */
export interface Counts {
  sent: number;
  enqueueFailed: number;
  handled: number;
  duplicates: number;
  missing: number;
}

/** Everything measured for one system. */
export interface SystemResult {
  name: string;
  settings: Record<string, string | number | boolean>;
  rssOf: string;
  burnDown: {
    fillSeconds: number;
    fillPerSec: number;
    consumeSeconds: number;
    throughputPerSec: number;
    counts: Counts;
  } | null;
  steady: {
    offeredPerSec: number;
    throughputPerSec: number;
    latencyMs: LatencySummary;
    drainSeconds: number;
    counts: Counts;
  } | null;
  flat: {
    enqueuedPerSec: number;
    throughputPerSec: number;
    latencyMs: LatencySummary;
    backlogAtEnd: number;
    drainSeconds: number;
    counts: Counts;
  } | null;
  databaseBytes: number | null;
  peakRssKb: number | null;
  strays: number;
  /** Correctness failures (lost, duplicated, refused); empty when all is well. */
  failures: string[];
}

/** Run the three phases on `sys`; never throws (an error becomes a failure). */
export async function runPhases(
  sys: SystemUnderTest,
  env: BenchEnv,
  o: PhaseOptions,
  progress: Progress,
): Promise<SystemResult> {
  const r: SystemResult = {
    name: sys.name,
    settings: sys.settings,
    rssOf: sys.rssOf,
    burnDown: null,
    steady: null,
    flat: null,
    databaseBytes: null,
    peakRssKb: null,
    strays: 0,
    failures: [],
  };
  const router = new PhaseRouter();
  try {
    progress.note(`${sys.name}: setting up`);
    await sys.setup();
    r.burnDown = await burnDown(sys, router, o, progress, r.failures);
    r.steady = await steady(sys, router, o, progress, r.failures);
    r.flat = await flat(sys, router, o, progress, r.failures);
    r.databaseBytes = await env.databaseSize(sys.database);
    r.peakRssKb = peakRssKb(sys.rssPid()) ?? null;
  } catch (err) {
    r.failures.push(`error: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    progress.end();
    await sys.teardown().catch((err: Error) => r.failures.push(`teardown: ${err.message}`));
  }
  r.strays = router.strays;
  if (router.strays > 0) r.failures.push(`${router.strays} handler call(s) for messages no phase sent`);
  return r;
}

async function burnDown(
  sys: SystemUnderTest,
  router: PhaseRouter,
  o: PhaseOptions,
  progress: Progress,
  failures: string[],
) {
  const p = router.begin("burn-down");
  let filled = 0;
  progress.track(`${sys.name}: burn-down, enqueue`, o.messages, () => filled);
  const fillStart = nowMs();
  const fill = await flatOut(
    o.loops,
    Number.POSITIVE_INFINITY,
    async (_k, i) => {
      await sys.enqueue(router.seq(i), nowMs());
      filled++;
    },
    o.messages,
  );
  const fillSeconds = (nowMs() - fillStart) / 1000;
  router.close(p, fill.started);
  progress.track(`${sys.name}: burn-down, consume`, o.messages, () => p.unique);
  const consumeStart = nowMs();
  await sys.startConsumer(router.seen);
  await drain(p, fill.failed, o.drainSeconds);
  // Late duplicates would arrive shortly after the last first sighting.
  await sleep(200);
  progress.end();
  const consumeSeconds = (p.lastSeenAt - consumeStart) / 1000;
  const counts = countsOf(p, fill.failed);
  const problems: string[] = [];
  if (fill.failed > 0) problems.push(`${fill.failed} enqueue(s) failed (${fill.firstError})`);
  if (counts.missing > 0) problems.push(`${counts.missing} of ${o.messages} never handled`);
  if (counts.duplicates > 0) problems.push(`${counts.duplicates} handled more than once`);
  if (p.beyond() > 0) problems.push(`${p.beyond()} unexpected handler call(s)`);
  for (const x of problems) failures.push(`burn-down: ${x}`);
  return {
    fillSeconds: round(fillSeconds, 2),
    fillPerSec: round(fill.started / fillSeconds, 0),
    consumeSeconds: round(consumeSeconds, 2),
    throughputPerSec: counts.handled > 0 ? round(counts.handled / consumeSeconds, 0) : 0,
    counts,
  };
}

async function steady(
  sys: SystemUnderTest,
  router: PhaseRouter,
  o: PhaseOptions,
  progress: Progress,
  failures: string[],
) {
  const p = router.begin("steady");
  const start = nowMs();
  const warmupMs = Math.min(o.warmupSeconds * 1000, (o.steadySeconds * 1000) / 2);
  p.latencyFor = { from: start + warmupMs, to: Number.POSITIVE_INFINITY };
  p.window = { from: start + warmupMs, to: start + o.steadySeconds * 1000 };
  progress.timed(`${sys.name}: steady ${o.rate}/s`, o.steadySeconds * 1000);
  const run = await paced(o.rate, o.steadySeconds * 1000, (i, at) => sys.enqueue(router.seq(i), at));
  router.close(p, run.started);
  progress.track(`${sys.name}: steady, drain`, run.started, () => p.unique);
  const drainSeconds = await drain(p, run.failed, o.drainSeconds);
  progress.end();
  const counts = countsOf(p, run.failed);
  if (run.failed > 0) failures.push(`steady: ${run.failed} enqueue(s) failed (${run.firstError})`);
  if (counts.missing > 0) failures.push(`steady: ${counts.missing} never handled`);
  const windowSeconds = (p.window.to - p.window.from) / 1000;
  return {
    offeredPerSec: o.rate,
    throughputPerSec: round(p.inWindow / windowSeconds, 0),
    latencyMs: p.latencySummary(),
    drainSeconds,
    counts,
  };
}

async function flat(
  sys: SystemUnderTest,
  router: PhaseRouter,
  o: PhaseOptions,
  progress: Progress,
  failures: string[],
) {
  const p = router.begin("flat");
  const warmupMs = Math.min(o.warmupSeconds * 1000, (o.flatSeconds * 1000) / 2);
  const from = nowMs() + warmupMs;
  const to = nowMs() + o.flatSeconds * 1000;
  p.window = { from, to };
  p.latencyFor = { from, to };
  let enqueued = 0;
  progress.timed(`${sys.name}: flat out`, o.flatSeconds * 1000);
  const run = await flatOut(o.loops, to, async (_k, i) => {
    await sys.enqueue(router.seq(i), nowMs());
    const at = nowMs();
    if (at >= from && at <= to) enqueued++;
  });
  router.close(p, run.started);
  const backlogAtEnd = run.started - p.unique;
  progress.track(`${sys.name}: flat out, drain`, run.started, () => p.unique);
  const drainSeconds = await drain(p, run.failed, o.drainSeconds);
  progress.end();
  const counts = countsOf(p, run.failed);
  if (run.failed > 0) failures.push(`flat out: ${run.failed} enqueue(s) failed (${run.firstError})`);
  if (counts.missing > 0) failures.push(`flat out: ${counts.missing} never handled`);
  const seconds = (to - from) / 1000;
  return {
    enqueuedPerSec: round(enqueued / seconds, 0),
    throughputPerSec: round(p.inWindow / seconds, 0),
    latencyMs: p.latencySummary(),
    backlogAtEnd,
    drainSeconds,
    counts,
  };
}

/** Wait until every successfully enqueued message was handled; seconds waited, -1 on timeout. */
async function drain(p: PhaseTracker, failed: number, limitSeconds: number): Promise<number> {
  const start = nowMs();
  const deadline = start + limitSeconds * 1000;
  while (p.unique < p.started - failed) {
    if (nowMs() > deadline) return -1;
    await sleep(20);
  }
  return round((nowMs() - start) / 1000, 2);
}

function countsOf(p: PhaseTracker, failed: number): Counts {
  const missing = p.missing();
  return {
    sent: p.started,
    enqueueFailed: failed,
    handled: p.unique,
    duplicates: p.duplicates,
    // A failed enqueue that was never handled is counted as failed, not as lost.
    missing: Math.max(0, missing - failed),
  };
}
