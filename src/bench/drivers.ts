/**
 * Load drivers shared by the suites: flat out (a fixed number of loops, each sending as soon as its
 * previous send completed) and paced (a fixed offered rate on a timer schedule, where each send is
 * stamped with its scheduled time so a stall shows up as latency: no coordinated omission).
 */
import { nowMs, sleep } from "./stats.js";

/** Outcome of a driver run. */
export interface DriverResult {
  /** Sends started. */
  started: number;
  /** Sends whose promise rejected. */
  failed: number;
  /** First rejection, for the report. */
  firstError: string | undefined;
}

/**
 * Run `loops` concurrent loops until `untilMs` (nowMs clock) or until `maxCount` sends started;
 * loop `k` calls `send(k, i)` with a run-wide sequence number `i`, awaiting each before the next.
 * Resolves when every loop has ended.
 */
export async function flatOut(
  loops: number,
  untilMs: number,
  send: (loop: number, i: number) => Promise<void>,
  maxCount = Number.POSITIVE_INFINITY,
): Promise<DriverResult> {
  const result: DriverResult = { started: 0, failed: 0, firstError: undefined };
  const loop = async (k: number) => {
    while (nowMs() < untilMs && result.started < maxCount) {
      const i = result.started++;
      try {
        await send(k, i);
      } catch (err) {
        result.failed++;
        result.firstError ??= (err as Error).message;
        if (result.failed > 1000) return;
      }
    }
  };
  await Promise.all(Array.from({ length: loops }, (_, k) => loop(k)));
  return result;
}

/**
 * Offer `rate` sends per second for `durationMs`: send `i` is scheduled at `start + i / rate` and
 * called with that time as soon as the timer loop reaches it, without waiting for earlier sends.
 * Resolves once every send has settled.
 */
export async function paced(
  rate: number,
  durationMs: number,
  send: (i: number, scheduledAt: number) => Promise<void>,
): Promise<DriverResult & { maxTimerLagMs: number }> {
  const total = Math.floor((rate * durationMs) / 1000);
  const interval = 1000 / rate;
  const result = { started: 0, failed: 0, firstError: undefined as string | undefined, maxTimerLagMs: 0 };
  const pending = new Set<Promise<void>>();
  const start = nowMs() + 5;
  while (result.started < total) {
    const now = nowMs();
    while (result.started < total && start + result.started * interval <= now) {
      const i = result.started++;
      const at = start + i * interval;
      result.maxTimerLagMs = Math.max(result.maxTimerLagMs, now - at);
      const p: Promise<void> = send(i, at).then(
        () => {
          pending.delete(p);
        },
        (err: unknown) => {
          pending.delete(p);
          result.failed++;
          result.firstError ??= (err as Error).message;
        },
      );
      pending.add(p);
    }
    const next = start + result.started * interval;
    await sleep(Math.min(1, next - nowMs()));
  }
  while (pending.size > 0) await Promise.all([...pending]);
  return result;
}
