/**
 * A latency histogram cheap enough for the hot paths: fixed buckets, plain counters, one short
 * loop per observation, no allocation. The metrics module renders it as a Prometheus histogram.
 */

/** Upper bounds of the buckets, in seconds (a final +Inf bucket is implied). */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
];

/** Observations counted per bucket (not cumulative), with their count and sum. */
export class LatencyHistogram {
  /** counts[i]: observations <= LATENCY_BUCKETS[i] and above the previous bound; the last is +Inf. */
  readonly counts: number[] = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
  count = 0;
  sum = 0;

  /** Count one observation of `seconds`. */
  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.count++;
    this.sum += seconds;
  }

  /** Count one observation of the time since `startMs` (performance.now() or Date.now() pairs). */
  since(startMs: number, nowMs: number): void {
    this.observe(Math.max(0, nowMs - startMs) / 1000);
  }
}
