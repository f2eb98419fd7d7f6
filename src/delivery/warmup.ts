/**
 * Consumer warm-up (KiteQ's ConnMeta.warmingupSec): a connection in its first warmingupSec
 * seconds is chosen for a push with probability elapsed / warmingupSec, so its share of the
 * group's traffic ramps from 0 to full. Pure: time and randomness are parameters.
 */

/**
 * Warm-up weight in [0, 1]: 0 at connection time, elapsed / warmingupSec while warming, 1 after
 * (and always 1 when warmingupSec <= 0, i.e. no warm-up).
 */
export function warmupWeight(connectedAtMs: number, warmingupSec: number, nowMs: number): number {
  if (!(warmingupSec > 0)) return 1;
  const elapsed = nowMs - connectedAtMs;
  if (elapsed <= 0) return 0;
  return Math.min(1, elapsed / (warmingupSec * 1000));
}

/** A connection that could take a push. */
export interface PushCandidate<T> {
  conn: T;
  connectedAtMs: number;
  warmingupSec: number;
  /** Pushes sent to it and not yet answered. */
  inFlight: number;
}

/**
 * Choose the connection for one push. Each warming candidate is eligible with probability equal
 * to its warm-up weight (one `random()` draw per candidate with 0 < weight < 1, in order); warm ones always
 * are. Among the eligible, the one with the fewest pushes in flight wins; ties are broken with
 * one more draw, so load spreads evenly.
 *
 * When every candidate is warming and all lose their draw, KiteQ would skip the push; we still
 * pick the highest-weighted one (fewest in flight among equals) if its weight is > 0, so a group
 * whose only consumers just connected is slowed by the ramp but not stalled. A candidate at
 * weight 0 (connected this instant) is never chosen; with no candidate left: undefined.
 */
export function pickConnection<T>(
  candidates: readonly PushCandidate<T>[],
  nowMs: number,
  random: () => number = Math.random,
): T | undefined {
  const eligible: PushCandidate<T>[] = [];
  let fallback: PushCandidate<T> | undefined;
  let fallbackWeight = 0;
  for (const c of candidates) {
    const w = warmupWeight(c.connectedAtMs, c.warmingupSec, nowMs);
    if (w >= 1 || (w > 0 && random() < w)) eligible.push(c);
    if (w > fallbackWeight || (w === fallbackWeight && w > 0 && fallback && c.inFlight < fallback.inFlight)) {
      fallback = c;
      fallbackWeight = w;
    }
  }
  if (eligible.length === 0) return fallback?.conn;
  const least = Math.min(...eligible.map((c) => c.inFlight));
  const ties = eligible.filter((c) => c.inFlight === least);
  if (ties.length === 1) return ties[0]?.conn;
  const index = Math.min(ties.length - 1, Math.floor(random() * ties.length));
  return ties[index]?.conn;
}
