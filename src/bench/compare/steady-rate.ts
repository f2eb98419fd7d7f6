/**
 * The steady phase's offered rate, per row: a rate that row can carry, so its latency is the
 * system's and not a producer backlog. By default a fraction (50%) of what the row carried end to
 * end in flat-out 16x1 (the lower of its enqueue and handled rates); `--rate N` offers N to every
 * row. When a row did not carry the rate (handled less than 90% of it, or needed more than 1.5 s to
 * drain afterwards), the phase is run again at half the rate, a few times at most.
 */
import { fmt } from "../output.js";

/** The rate chosen and why, as printed. */
export interface SteadyRate {
  perSec: number;
  rule: string;
}

/** What flat-out 16x1 measured (per second). */
export interface CarriedRate {
  enqueuedPerSec: number;
  throughputPerSec: number;
}

/** How to pick the rate. */
export interface SteadyRateOptions {
  /** > 0: offer this to every row. */
  fixedRate: number;
  /** Otherwise: this fraction of the flat-out 16x1 rate. */
  fraction: number;
  /** Never below this. */
  minRate: number;
}

/** `v` rounded down to `digits` significant digits (3,137 -> 3,100). */
export function roundDownSignificant(v: number, digits = 2): number {
  if (!(v > 0)) return 0;
  const step = 10 ** Math.max(0, Math.floor(Math.log10(v)) - digits + 1);
  return Math.floor(v / step) * step;
}

/** The steady rate of a row whose flat-out 16x1 carried `flat` (null: that phase failed). */
export function steadyRate(flat: CarriedRate | null, o: SteadyRateOptions): SteadyRate {
  if (o.fixedRate > 0) return { perSec: o.fixedRate, rule: "--rate, the same for every row" };
  const pct = `${Math.round(o.fraction * 100)}%`;
  const carried = flat === null ? 0 : Math.min(flat.enqueuedPerSec, flat.throughputPerSec);
  if (!(carried > 0)) {
    return { perSec: o.minRate, rule: `${o.minRate}/s: flat-out 16x1 measured nothing to take ${pct} of` };
  }
  const perSec = Math.max(o.minRate, roundDownSignificant(carried * o.fraction));
  return { perSec, rule: `${pct} of its flat-out 16x1 rate (${fmt(carried)}/s)` };
}

/** What one steady attempt measured. */
export interface SteadyAttempt {
  offeredPerSec: number;
  throughputPerSec: number;
  drainSeconds: number;
}

/** Share of the offered rate a row must handle in the window, and the longest drain after it. */
export const CARRIED = { minShare: 0.9, maxDrainSeconds: 1.5 } as const;

/** Whether the row carried the rate it was offered. */
export function carried(a: SteadyAttempt): boolean {
  return (
    a.throughputPerSec >= CARRIED.minShare * a.offeredPerSec && a.drainSeconds <= CARRIED.maxDrainSeconds
  );
}

/** The rate to try after `perSec` was not carried (half), or undefined below `minRate`. */
export function lowerRate(perSec: number, minRate: number): number | undefined {
  const next = roundDownSignificant(perSec / 2);
  return next >= minRate ? next : undefined;
}
