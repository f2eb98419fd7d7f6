/**
 * Time and latency statistics of the bench. Times are milliseconds on a clock that processes on
 * one machine share: the system's monotonic clock (process.hrtime: CLOCK_MONOTONIC on Linux, the
 * same for every process of a boot), sub-ms.
 */
import { readFileSync } from "node:fs";

/**
 * Now, in ms, comparable across processes on this machine (the compare suite's consumer child
 * stamps when it handled what the bench process sent). Not performance.timeOrigin +
 * performance.now(): each process takes its origin from the wall clock when it starts, and where
 * the wall clock drifts from the monotonic one or is stepped (this machine's virtual clock: 2-5
 * ms a second, and steps of seconds), processes started minutes apart disagree by as much: a
 * compare run measured its later rows' latencies 1.1 and 12.7 s long and their burn-downs 10x
 * slow. Not Date.now() either (steps within a run).
 */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Percentiles of a set of latency samples, in ms. */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** A growable list of samples (ms). */
export class Samples {
  private data = new Float64Array(1024);
  private n = 0;

  add(v: number): void {
    if (this.n === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.n++] = v;
  }

  get count(): number {
    return this.n;
  }

  summary(): LatencySummary {
    const sorted = this.data.slice(0, this.n).sort();
    let sum = 0;
    for (const v of sorted) sum += v;
    return {
      count: this.n,
      mean: round(this.n === 0 ? 0 : sum / this.n),
      p50: round(quantile(sorted, 0.5)),
      p95: round(quantile(sorted, 0.95)),
      p99: round(quantile(sorted, 0.99)),
      max: round(this.n === 0 ? 0 : sorted[this.n - 1]!),
    };
  }
}

/** Nearest-rank quantile of sorted values (0 when empty). */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

/** Round to 3 decimals (JSON stays readable). */
export function round(v: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** Peak resident set size (VmHWM) of a live process, in kB; undefined when unreadable. */
export function peakRssKb(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
