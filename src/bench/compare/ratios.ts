/**
 * The compare suite's ratios: how many times better each kiteq-pg row (uncapped and KiteQ
 * defaults) is than each peer row, per headline figure, and the acceptance checks of issue 7's
 * follow-up. "Better" is one direction for every figure: > 1 means the kiteq-pg row is better
 * (throughput: its rate / the peer's; latency, CPU per message, database size, RSS: the peer's / its).
 */
import { fmt } from "../output.js";
import { round } from "../stats.js";
import type { SystemResult } from "./phases.js";

/** The kiteq-pg rows the peers are compared with, in table order. */
export const BASELINES = ["kiteq-pg-uncapped", "kiteq-pg"] as const;

/** A kiteq-pg row's advantage over one peer row, per figure (null when either is missing). */
export interface Advantage {
  burnDown: number | null;
  flatAwaited: number | null;
  flatAwaitedP99: number | null;
  flatPipelined: number | null;
  flatPipelinedP99: number | null;
  steadyP50: number | null;
  steadyP99: number | null;
  /** CPU per message handled, all processes (the peer's / its): burn-down consume, flat 16x1. */
  burnDownCpu: number | null;
  flatAwaitedCpu: number | null;
  databaseBytes: number | null;
  peakRss: number | null;
}

/** One baseline's advantages over every peer row. */
export interface AdvantageTable {
  baseline: string;
  caps: string;
  peers: { name: string; advantage: Advantage }[];
}

/** `a / b` to 2 decimals; null when either is missing or b is not positive. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || !(b > 0)) return null;
  return round(a / b, 2);
}

/** Whether a row is one of the kiteq-pg baselines. */
export function isBaseline(name: string): boolean {
  return (BASELINES as readonly string[]).includes(name);
}

/** `base`'s advantage over `peer`. */
export function advantage(base: SystemResult, peer: SystemResult): Advantage {
  return {
    burnDown: ratio(base.burnDown?.throughputPerSec, peer.burnDown?.throughputPerSec),
    flatAwaited: ratio(base.flatAwaited?.throughputPerSec, peer.flatAwaited?.throughputPerSec),
    flatAwaitedP99: ratio(peer.flatAwaited?.latencyMs.p99, base.flatAwaited?.latencyMs.p99),
    flatPipelined: ratio(base.flatPipelined?.throughputPerSec, peer.flatPipelined?.throughputPerSec),
    flatPipelinedP99: ratio(peer.flatPipelined?.latencyMs.p99, base.flatPipelined?.latencyMs.p99),
    steadyP50: ratio(peer.steady?.latencyMs.p50, base.steady?.latencyMs.p50),
    steadyP99: ratio(peer.steady?.latencyMs.p99, base.steady?.latencyMs.p99),
    burnDownCpu: ratio(peer.burnDown?.cpu?.total, base.burnDown?.cpu?.total),
    flatAwaitedCpu: ratio(peer.flatAwaited?.cpu?.total, base.flatAwaited?.cpu?.total),
    databaseBytes: ratio(peer.footprint.databaseBytes, base.footprint.databaseBytes),
    peakRss: ratio(peer.footprint.peakRssKb, base.footprint.peakRssKb),
  };
}

/** One table per kiteq-pg row present, each with a line per peer row. */
export function advantageTables(results: readonly SystemResult[]): AdvantageTable[] {
  const peers = results.filter((r) => !isBaseline(r.name));
  const out: AdvantageTable[] = [];
  for (const name of BASELINES) {
    const base = results.find((r) => r.name === name);
    if (base === undefined || peers.length === 0) continue;
    out.push({
      baseline: name,
      caps: base.caps,
      peers: peers.map((p) => ({ name: p.name, advantage: advantage(base, p) })),
    });
  }
  return out;
}

/** One acceptance check: what, the measured value, and whether it holds (null: not measured). */
export interface AcceptanceCheck {
  check: string;
  value: string;
  ok: boolean | null;
  /** The value as a number (a ratio, ms, or rows failing) and the bound it is held to. */
  measure: number | null;
  bound: { atLeast: number } | { atMost: number };
  /** Over several rounds: the median of their measures, or the worst (a check every round must hold). */
  overRounds: "median" | "worst";
}

/** The targets of the acceptance checks. */
export interface AcceptanceTargets {
  /** Flat-out 16x1: each kiteq-pg row's handled/s over every peer row's, at least. */
  flatAwaitedRatio: number;
  /** Flat-out 16x1: each kiteq-pg row's publish-to-handler p99, at most (ms). */
  flatAwaitedP99Ms: number;
  /** Burn-down: kiteq-pg-uncapped over the peer rows whose name starts with `prefix`, at least. */
  burnDown: { prefix: string; min: number }[];
}

/** The targets of the issue. */
export const ISSUE_TARGETS: AcceptanceTargets = {
  flatAwaitedRatio: 5,
  flatAwaitedP99Ms: 15,
  burnDown: [
    { prefix: "graphile-worker", min: 1.5 },
    { prefix: "pg-boss", min: 3 },
  ],
};

const x = (v: number | null) => (v === null ? "-" : `${v}x`);

/** The acceptance checks over one run's rows. */
export function acceptanceChecks(
  results: readonly SystemResult[],
  t: AcceptanceTargets = ISSUE_TARGETS,
): AcceptanceCheck[] {
  const out: AcceptanceCheck[] = [];
  const peers = results.filter((r) => !isBaseline(r.name));
  const failing = results.filter((r) => r.failures.length > 0).map((r) => r.name);
  out.push({
    check: "exactly once in every phase of every row",
    value: failing.length === 0 ? "yes" : `not: ${failing.join(", ")}`,
    ok: failing.length === 0,
    measure: failing.length,
    bound: { atMost: 0 },
    overRounds: "worst",
  });
  for (const name of BASELINES) {
    const base = results.find((r) => r.name === name);
    if (base === undefined) continue;
    const ratios = peers.map((p) => ({
      peer: p.name,
      r: ratio(base.flatAwaited?.throughputPerSec, p.flatAwaited?.throughputPerSec),
    }));
    const known = ratios.filter((q): q is { peer: string; r: number } => q.r !== null);
    const worst = known.reduce<{ peer: string; r: number } | undefined>(
      (w, q) => (w === undefined || q.r < w.r ? q : w),
      undefined,
    );
    const phase = `flat ${base.flatAwaited?.inFlight ?? 16}x1`;
    out.push({
      check: `${phase}: ${name} handled/s >= ${t.flatAwaitedRatio}x every peer row`,
      value: worst === undefined ? "-" : `lowest ${x(worst.r)} (${worst.peer})`,
      ok: worst === undefined || known.length < ratios.length ? null : worst.r >= t.flatAwaitedRatio,
      measure: worst === undefined || known.length < ratios.length ? null : worst.r,
      bound: { atLeast: t.flatAwaitedRatio },
      overRounds: "median",
    });
    const p99 = base.flatAwaited?.latencyMs.count ? base.flatAwaited.latencyMs.p99 : null;
    out.push({
      check: `${phase}: ${name} publish-to-handler p99 <= ${t.flatAwaitedP99Ms} ms`,
      value: p99 === null ? "-" : `${fmt(p99)} ms`,
      ok: p99 === null ? null : p99 <= t.flatAwaitedP99Ms,
      measure: p99,
      bound: { atMost: t.flatAwaitedP99Ms },
      overRounds: "median",
    });
  }
  const uncapped = results.find((r) => r.name === "kiteq-pg-uncapped");
  if (uncapped !== undefined) {
    for (const target of t.burnDown) {
      for (const p of peers.filter((q) => q.name.startsWith(target.prefix))) {
        const r = ratio(uncapped.burnDown?.throughputPerSec, p.burnDown?.throughputPerSec);
        out.push({
          check: `burn-down: kiteq-pg-uncapped >= ${target.min}x ${p.name}`,
          value: x(r),
          ok: r === null ? null : r >= target.min,
          measure: r,
          bound: { atLeast: target.min },
          overRounds: "median",
        });
      }
    }
  }
  return out;
}

/** One acceptance check over several rounds: each round's value, and the median held to the bound. */
export interface RoundsCheck {
  check: string;
  rounds: string[];
  /** Median of the rounds' measures (a check with overRounds "worst": the worst round). */
  median: number | null;
  ok: boolean | null;
}

/**
 * The acceptance checks of several rounds of the same rows, check by check: the median of the
 * rounds' measures against the bound. A ratio from one round compares rows measured minutes
 * apart on a machine whose speed moves by a third between minutes; the median of three is not
 * moved by one unlucky minute. Exactly-once is not a statistic: every round must hold it.
 */
export function acceptanceOverRounds(rounds: readonly (readonly AcceptanceCheck[])[]): RoundsCheck[] {
  const first = rounds[0] ?? [];
  return first.map((c, i) => {
    // A round cut short (Ctrl-C) may lack a check: its column says so, and the median is not taken.
    const same = rounds.map((r) => (r[i]?.check === c.check ? r[i] : undefined));
    const known = same.flatMap((q) => (q?.measure === null || q === undefined ? [] : [q.measure]));
    let median: number | null = null;
    if (known.length === rounds.length && known.length > 0) {
      const worst = "atLeast" in c.bound ? Math.min(...known) : Math.max(...known);
      median = c.overRounds === "worst" ? worst : medianOf(known);
    }
    const ok =
      median === null ? null : "atLeast" in c.bound ? median >= c.bound.atLeast : median <= c.bound.atMost;
    return { check: c.check, rounds: same.map((q) => q?.value ?? "-"), median, ok };
  });
}

/** The median (the mean of the middle two for an even count). */
function medianOf(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return round(s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, 2);
}
