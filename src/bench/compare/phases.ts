/**
 * The workloads every compare row runs, in order, on its own fresh database:
 *
 * 0. warm-up: an untimed burn-down of W messages (filled the same way, then consumed), after which
 *    the consumer pauses with its process kept: every row's code is then as warm as a long-running
 *    service's on exactly the path the burn-down measures (a kiteq-pg broker spent 18.5 us of CPU
 *    per delivery in a burn-down after a 5,000-message trickle, 8-13 us in the next ones);
 *    exactly-once is checked for it too;
 * 1. burn-down: fill N messages with no consumer (the system's batch API where it has one), then
 *    start the consumer and time how long it takes to handle them all;
 * 2. flat out, awaited: P producers, each awaiting one enqueue before the next (16x1);
 * 3. flat out, pipelined: the same producers with W enqueues in flight in all (64);
 * 4. steady: an offered rate the row can carry (steady-rate.ts), open loop.
 *
 * Latency is from the start of the enqueue call (steady: its scheduled time) to the handler call.
 * Exactly-once is checked for every phase at the end of the row, once the consumer has stopped and
 * reported every handler call, so a late duplicate counts against the phase that sent the message.
 * The burn-down's consume and the flat-out windows also give the CPU time spent per message handled
 * (Linux /proc): a figure that moves far less than throughput when the machine's speed does.
 */
import { CpuMeter, postmasterPid, processCpuSeconds, serverCpuSeconds } from "../cpu.js";
import { flatOut, paced } from "../drivers.js";
import type { BenchEnv } from "../environment.js";
import { fmt, type Progress } from "../output.js";
import { type LatencySummary, nowMs, peakRssKb, round, sleep } from "../stats.js";
import { carried, lowerRate, type SteadyRateOptions, steadyRate } from "./steady-rate.js";
import type { SystemUnderTest } from "./system.js";
import { type Counts, countsOf, exactlyOnceProblems, PhaseRouter, type PhaseTracker } from "./tracker.js";

/** Sizes of the workloads. */
export interface PhaseOptions {
  /** warm-up: messages of an untimed burn-down before the measured one (0: none, it runs cold). */
  warmupMessages: number;
  /** burn-down: messages enqueued before the consumer starts. */
  messages: number;
  /** burn-down, systems with a batch API: messages per call, and calls in flight. */
  fillBatch: number;
  fillCalls: number;
  /** Producers of the awaited flat-out phase (one enqueue in flight each). */
  producers: number;
  /** Enqueues in flight in the pipelined flat-out phase (and kiteq-pg's burn-down fill). */
  pipeline: number;
  /** Steady attempts at most (each after the first at half the rate). */
  steadyAttempts: number;
  flatSeconds: number;
  steadySeconds: number;
  warmupSeconds: number;
  drainSeconds: number;
  steady: SteadyRateOptions;
}

/** Burn-down figures. */
export interface BurnDownResult {
  fill: string;
  fillSeconds: number;
  fillPerSec: number;
  consumeSeconds: number;
  throughputPerSec: number;
  /** CPU per message over the consume part (null: /proc not readable). */
  cpu: CpuPerMessage | null;
  counts: Counts;
}

/** Flat-out figures (one of the two forms). */
export interface FlatResult {
  load: string;
  inFlight: number;
  enqueuedPerSec: number;
  throughputPerSec: number;
  latencyMs: LatencySummary;
  /** CPU per message handled in the measuring window (null: /proc not readable). */
  cpu: CpuPerMessage | null;
  backlogAtEnd: number;
  drainSeconds: number;
  counts: Counts;
}

/** Steady figures (of the attempt at the rate the row carried, or the last one). */
export interface SteadyResult {
  rule: string;
  /** Whether the row carried the reported rate (steady-rate.ts CARRIED). */
  carried: boolean;
  /** Earlier attempts at higher rates the row did not carry. */
  notCarried: { offeredPerSec: number; throughputPerSec: number; drainSeconds: number }[];
  offeredPerSec: number;
  throughputPerSec: number;
  latencyMs: LatencySummary;
  drainSeconds: number;
  maxTimerLagMs: number;
  counts: Counts;
}

/** Database size and peak RSS, with what each covers. */
export interface Footprint {
  databaseBytes: number | null;
  retention: string;
  rssOf: string;
  processes: { role: string; peakRssKb: number | null }[];
  /** Sum of the processes' peaks (null if any is unknown). */
  peakRssKb: number | null;
}

/**
 * CPU time per message handled, microseconds, by where it was spent: CPU seconds over a phase's
 * measured interval divided by the messages handled in it.
 */
export interface CpuPerMessage {
  /** The PostgreSQL server: its backends and background processes (WAL writer, checkpointer, ...). */
  database: number;
  /** The row's own processes (measuredProcesses: kiteq-pg's broker and consumer, a peer's consumer). */
  system: number;
  /** The bench process: the producers' enqueue calls, for every row, and the tracking. */
  bench: number;
  total: number;
}

/** The warm-up before the burn-down (untimed: only what it took and its exactly-once counts). */
export interface WarmUpResult {
  messages: number;
  seconds: number;
  counts: Counts;
}

/** Everything measured for one row. */
export interface SystemResult {
  name: string;
  version: string;
  caps: string;
  settings: Record<string, string | number | boolean>;
  warmUp: WarmUpResult | null;
  burnDown: BurnDownResult | null;
  flatAwaited: FlatResult | null;
  flatPipelined: FlatResult | null;
  steady: SteadyResult | null;
  footprint: Footprint;
  /** Exactly-once over the whole row: duplicate handler calls and lost messages, all phases. */
  duplicates: number;
  missing: number;
  strays: number;
  /** Correctness failures (lost, duplicated, refused, stalled); empty when all is well. */
  failures: string[];
}

/** A phase whose exactly-once counts are taken at the end of the row. */
interface Check {
  phase: string;
  tracker: PhaseTracker;
  failed: () => number;
  firstError: () => string | undefined;
  result: { counts: Counts };
}

/** Run the phases on `sys`; never throws (an error becomes a failure). */
export async function runPhases(
  sys: SystemUnderTest,
  env: BenchEnv,
  o: PhaseOptions,
  progress: Progress,
): Promise<SystemResult> {
  const r: SystemResult = {
    name: sys.name,
    version: sys.version,
    caps: sys.caps,
    settings: sys.settings,
    warmUp: null,
    burnDown: null,
    flatAwaited: null,
    flatPipelined: null,
    steady: null,
    footprint: {
      databaseBytes: null,
      retention: sys.retention,
      rssOf: sys.rssOf,
      processes: [],
      peakRssKb: null,
    },
    duplicates: 0,
    missing: 0,
    strays: 0,
    failures: [],
  };
  const router = new PhaseRouter();
  const checks: Check[] = [];
  const ctx = { sys, router, o, progress, checks, cpuMeter: () => cpuMeter(sys, env) };
  try {
    progress.note(`${sys.name}: setting up`);
    await sys.setup();
    r.warmUp = await warmUp(ctx);
    r.burnDown = await burnDown(ctx);
    r.flatAwaited = await flat(
      ctx,
      `flat ${o.producers}x1`,
      o.producers,
      `${o.producers} producers x 1 awaited enqueue`,
    );
    r.flatPipelined = await flat(
      ctx,
      `flat ${o.pipeline} in flight`,
      o.pipeline,
      `${o.pipeline} enqueues in flight`,
    );
    r.steady = await steadySweep(ctx, steadyRate(r.flatAwaited, o.steady));
  } catch (err) {
    r.failures.push(`error: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    r.footprint = await footprint(sys, env);
    // Late duplicates would arrive shortly after the last first sighting; stopping the consumer
    // reports every handler call made before it stopped.
    await sleep(300);
    await sys.stopConsumer();
  } catch (err) {
    r.failures.push(`stopping: ${err instanceof Error ? err.message : String(err)}`);
  }
  progress.end();
  for (const c of checks) {
    c.result.counts = countsOf(c.tracker, c.failed());
    r.duplicates += c.result.counts.duplicates;
    r.missing += c.result.counts.missing;
    const first = c.firstError();
    for (const x of exactlyOnceProblems(c.result.counts)) {
      r.failures.push(`${c.phase}: ${x}${x.includes("enqueue") && first ? ` (${first})` : ""}`);
    }
  }
  await sys.teardown().catch((err: Error) => r.failures.push(`teardown: ${err.message}`));
  await env
    .retireDatabase(sys.database)
    .catch((err: Error) => r.failures.push(`dropping its database: ${err.message}`));
  r.strays = router.strays;
  if (router.strays > 0) r.failures.push(`${router.strays} handler call(s) for messages no phase sent`);
  return r;
}

interface Ctx {
  sys: SystemUnderTest;
  router: PhaseRouter;
  o: PhaseOptions;
  progress: Progress;
  checks: Check[];
  /** A meter of the places CpuPerMessage names (undefined: the postmaster is not known). */
  cpuMeter: () => CpuMeter | undefined;
}

/**
 * CPU of the PostgreSQL server (postmaster and children), the row's processes as they are when
 * read, and this process.
 */
function cpuMeter(sys: SystemUnderTest, env: BenchEnv): CpuMeter | undefined {
  const postmaster = postmasterPid(env.pg.dataDir);
  if (postmaster === undefined) return undefined;
  return new CpuMeter(
    new Map([
      ["database", () => serverCpuSeconds(postmaster)],
      ["system", () => sys.measuredProcesses().reduce((sum, m) => sum + processCpuSeconds(m.pid), 0)],
      ["bench", () => processCpuSeconds(process.pid)],
    ]),
  );
}

/** CPU per message from a CpuMeter's seconds; null when there are none or nothing was handled. */
export function cpuPerMessage(
  cpuSeconds: Record<string, number> | undefined,
  messages: number,
): CpuPerMessage | null {
  if (cpuSeconds === undefined || messages <= 0) return null;
  const us = (key: string) => round(((cpuSeconds[key] ?? 0) * 1e6) / messages, 1);
  const database = us("database");
  const system = us("system");
  const bench = us("bench");
  return { database, system, bench, total: round(database + system + bench, 1) };
}

const noCounts = (): Counts => ({
  sent: 0,
  enqueueFailed: 0,
  handled: 0,
  duplicates: 0,
  missing: 0,
  beyond: 0,
});

/**
 * The warm-up: fill `warmupMessages` as burnDown fills, start the consumer, wait until all were
 * handled, then pause the consumer (burnDown starts it again).
 */
async function warmUp(ctx: Ctx): Promise<WarmUpResult | null> {
  const { sys, router, o, progress, checks } = ctx;
  if (o.warmupMessages <= 0) return null;
  const p = router.begin("warm-up");
  const start = nowMs();
  const f = await fillBacklog(ctx, o.warmupMessages, "warm-up");
  router.close(p, f.started);
  const result: WarmUpResult = { messages: f.started, seconds: 0, counts: noCounts() };
  checks.push({
    phase: "warm-up",
    tracker: p,
    failed: () => f.failedMessages,
    firstError: () => f.firstError,
    result,
  });
  progress.track(`${sys.name}: warm-up, consume`, f.started, () => p.unique);
  await sys.startConsumer(router.seen);
  await drainOrThrow(p, f.failedMessages, o.drainSeconds, "warm-up");
  progress.end();
  // The acks of the last handler calls leave just after them: let them land before the pause.
  await sleep(300);
  await sys.pauseConsumer();
  result.seconds = round((nowMs() - start) / 1000, 2);
  return result;
}

/** What fillBacklog did. */
interface Fill {
  /** How it filled (the batch API, or pipelined single enqueues). */
  how: string;
  started: number;
  failedMessages: number;
  firstError: string | undefined;
}

/**
 * Enqueue `n` messages of the open phase with no consumer running: through the system's batch API
 * where it has one, else with pipelined single enqueues.
 */
async function fillBacklog({ sys, router, o, progress }: Ctx, n: number, label: string): Promise<Fill> {
  let filled = 0;
  let failedMessages = 0;
  progress.track(`${sys.name}: ${label}, enqueue`, n, () => filled);
  const batch = sys.enqueueBatch?.bind(sys);
  if (batch !== undefined) {
    const run = await flatOut(
      o.fillCalls,
      Number.POSITIVE_INFINITY,
      async (_k, b) => {
        const first = b * o.fillBatch;
        const size = Math.min(o.fillBatch, n - first);
        const seqs = Array.from({ length: size }, (_, j) => router.seq(first + j));
        try {
          await batch(seqs, nowMs());
        } catch (err) {
          failedMessages += size;
          throw err;
        }
        filled += size;
      },
      Math.ceil(n / o.fillBatch),
    );
    return {
      how: `${sys.fillMethod} of ${o.fillBatch}, ${o.fillCalls} calls in flight`,
      started: Math.min(n, run.started * o.fillBatch),
      failedMessages,
      firstError: run.firstError,
    };
  }
  const run = await flatOut(
    o.pipeline,
    Number.POSITIVE_INFINITY,
    async (k, i) => {
      await sys.enqueue(k % o.producers, router.seq(i), nowMs());
      filled++;
    },
    n,
  );
  return {
    how: `${sys.fillMethod}, ${o.pipeline} in flight`,
    started: run.started,
    failedMessages: run.failed,
    firstError: run.firstError,
  };
}

async function burnDown(ctx: Ctx): Promise<BurnDownResult> {
  const { sys, router, o, progress, checks, cpuMeter } = ctx;
  const p = router.begin("burn-down");
  const fillStart = nowMs();
  const { how: fill, started, failedMessages, firstError } = await fillBacklog(ctx, o.messages, "burn-down");
  const fillSeconds = (nowMs() - fillStart) / 1000;
  router.close(p, started);
  progress.track(`${sys.name}: burn-down, consume`, started, () => p.unique);
  const consumeStart = nowMs();
  const meter = cpuMeter();
  meter?.begin();
  await sys.startConsumer(router.seen);
  await drainOrThrow(p, failedMessages, o.drainSeconds, "burn-down");
  // Up to 20 ms after the last message (the drain's poll): a little idle time, no work of another phase.
  const cpuUsed = meter?.end().cpuSeconds;
  progress.end();
  const consumeSeconds = (p.lastSeenAt - consumeStart) / 1000;
  const result: BurnDownResult = {
    fill,
    fillSeconds: round(fillSeconds, 2),
    fillPerSec: round((started - failedMessages) / fillSeconds, 0),
    consumeSeconds: round(consumeSeconds, 2),
    throughputPerSec: p.unique > 0 ? round(p.unique / consumeSeconds, 0) : 0,
    cpu: cpuPerMessage(cpuUsed, p.unique),
    counts: noCounts(),
  };
  checks.push({
    phase: "burn-down",
    tracker: p,
    failed: () => failedMessages,
    firstError: () => firstError,
    result,
  });
  return result;
}

async function flat(
  { sys, router, o, progress, checks, cpuMeter }: Ctx,
  phase: string,
  loops: number,
  load: string,
): Promise<FlatResult> {
  const p = router.begin(phase);
  const warmupMs = Math.min(o.warmupSeconds * 1000, (o.flatSeconds * 1000) / 2);
  const from = nowMs() + warmupMs;
  const to = nowMs() + o.flatSeconds * 1000;
  p.window = { from, to };
  p.latencyFor = { from, to };
  let enqueued = 0;
  progress.timed(`${sys.name}: ${phase}`, o.flatSeconds * 1000);
  // CPU over the measuring window, sampled by timers at its ends.
  const meter = cpuMeter();
  let begun = false;
  let cpuUsed: Record<string, number> | undefined;
  const fromTimer = setTimeout(
    () => {
      meter?.begin();
      begun = true;
    },
    Math.max(0, from - nowMs()),
  );
  const toTimer = setTimeout(() => (cpuUsed = meter?.end().cpuSeconds), Math.max(0, to - nowMs()));
  const run = await flatOut(loops, to, async (k, i) => {
    // Producer k % producers: 16x1 gives each producer one loop, pipelined several.
    await sys.enqueue(k % o.producers, router.seq(i), nowMs());
    const at = nowMs();
    if (at >= from && at <= to) enqueued++;
  });
  router.close(p, run.started);
  // flatOut returns once every loop's last enqueue (started before `to`) is answered.
  clearTimeout(fromTimer);
  clearTimeout(toTimer);
  if (begun) cpuUsed ??= meter?.end().cpuSeconds;
  const backlogAtEnd = run.started - p.unique;
  const result: FlatResult = {
    load,
    inFlight: loops,
    enqueuedPerSec: 0,
    throughputPerSec: 0,
    latencyMs: p.latencySummary(),
    cpu: null,
    backlogAtEnd,
    drainSeconds: 0,
    counts: noCounts(),
  };
  checks.push({ phase, tracker: p, failed: () => run.failed, firstError: () => run.firstError, result });
  progress.track(`${sys.name}: ${phase}, drain`, run.started, () => p.unique);
  result.drainSeconds = await drainOrThrow(p, run.failed, o.drainSeconds, phase);
  progress.end();
  const seconds = (to - from) / 1000;
  result.enqueuedPerSec = round(enqueued / seconds, 0);
  result.throughputPerSec = round(p.inWindow / seconds, 0);
  result.latencyMs = p.latencySummary();
  result.cpu = cpuPerMessage(cpuUsed, p.inWindow);
  return result;
}

/** Steady at `rate`; again at half the rate while the row did not carry it. */
async function steadySweep(ctx: Ctx, rate: { perSec: number; rule: string }): Promise<SteadyResult> {
  const notCarried: SteadyResult["notCarried"] = [];
  let perSec = rate.perSec;
  for (let attempt = 1; ; attempt++) {
    const r = await steady(ctx, attempt === 1 ? "steady" : `steady (${attempt})`, perSec, rate.rule);
    const next = lowerRate(perSec, ctx.o.steady.minRate);
    if (r.carried || attempt >= ctx.o.steadyAttempts || next === undefined) {
      r.notCarried = notCarried;
      if (notCarried.length > 0) {
        const tried = notCarried.map(
          (a) => `${fmt(a.offeredPerSec)}/s (handled ${fmt(a.throughputPerSec)}/s)`,
        );
        r.rule = `${rate.rule}, halved after ${tried.join(", ")} was not carried`;
      }
      return r;
    }
    notCarried.push({
      offeredPerSec: r.offeredPerSec,
      throughputPerSec: r.throughputPerSec,
      drainSeconds: r.drainSeconds,
    });
    ctx.progress.note(`${ctx.sys.name}: ${fmt(perSec)}/s not carried, trying ${fmt(next)}/s`);
    perSec = next;
  }
}

async function steady(
  { sys, router, o, progress, checks }: Ctx,
  phase: string,
  perSec: number,
  rule: string,
): Promise<SteadyResult> {
  const p = router.begin(phase);
  const start = nowMs();
  const warmupMs = Math.min(o.warmupSeconds * 1000, (o.steadySeconds * 1000) / 2);
  p.latencyFor = { from: start + warmupMs, to: Number.POSITIVE_INFINITY };
  p.window = { from: start + warmupMs, to: start + o.steadySeconds * 1000 };
  progress.timed(`${sys.name}: ${phase} ${perSec}/s`, o.steadySeconds * 1000);
  const run = await paced(perSec, o.steadySeconds * 1000, (i, at) =>
    sys.enqueue(i % o.producers, router.seq(i), at),
  );
  router.close(p, run.started);
  const result: SteadyResult = {
    rule,
    carried: false,
    notCarried: [],
    offeredPerSec: perSec,
    throughputPerSec: 0,
    latencyMs: p.latencySummary(),
    drainSeconds: 0,
    maxTimerLagMs: round(run.maxTimerLagMs, 1),
    counts: noCounts(),
  };
  checks.push({
    phase,
    tracker: p,
    failed: () => run.failed,
    firstError: () => run.firstError,
    result,
  });
  progress.track(`${sys.name}: ${phase}, drain`, run.started, () => p.unique);
  result.drainSeconds = await drainOrThrow(p, run.failed, o.drainSeconds, phase);
  progress.end();
  result.throughputPerSec = round(p.inWindow / ((p.window.to - p.window.from) / 1000), 0);
  result.latencyMs = p.latencySummary();
  result.carried = carried(result);
  return result;
}

async function footprint(sys: SystemUnderTest, env: BenchEnv): Promise<Footprint> {
  const processes = sys
    .measuredProcesses()
    .map((m) => ({ role: m.role, peakRssKb: peakRssKb(m.pid) ?? null }));
  const known = processes.every((x) => x.peakRssKb !== null) && processes.length > 0;
  return {
    databaseBytes: await env.databaseSize(sys.database).catch(() => null),
    retention: sys.retention,
    rssOf: sys.rssOf,
    processes,
    peakRssKb: known ? processes.reduce((s, x) => s + x.peakRssKb!, 0) : null,
  };
}

/**
 * Wait until every successfully enqueued message was handled; seconds waited. Throws when that
 * takes longer than `limitSeconds`: the next phase would measure this one's backlog.
 */
async function drainOrThrow(p: PhaseTracker, failed: number, limitSeconds: number, phase: string) {
  const start = nowMs();
  const deadline = start + limitSeconds * 1000;
  while (p.unique < p.started - failed) {
    if (nowMs() > deadline) {
      throw new Error(
        `${phase}: ${p.started - failed - p.unique} message(s) not handled within ${limitSeconds} s`,
      );
    }
    await sleep(20);
  }
  return round((nowMs() - start) / 1000, 2);
}
