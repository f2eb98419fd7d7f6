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
 * When every candidate is warming and all lose their draw, undefined: the push is skipped, as
 * KiteQ skips it (the dispatcher spends that push's share of the group's rate on the lost draw,
 * so a group whose only consumers just connected gets weight x its rate, ramping to full). It
 * used to pick the best-weighted one anyway: the ramp did nothing for such a group (a 50,000
 * backlog drained at the full watermark inside a 30 s warm-up). Also undefined with no candidate.
 */
export function pickConnection<T>(
  candidates: readonly PushCandidate<T>[],
  nowMs: number,
  random: () => number = Math.random,
): T | undefined {
  const eligible: PushCandidate<T>[] = [];
  for (const c of candidates) {
    const w = warmupWeight(c.connectedAtMs, c.warmingupSec, nowMs);
    if (w >= 1 || (w > 0 && random() < w)) eligible.push(c);
  }
  if (eligible.length === 0) return undefined;
  const least = Math.min(...eligible.map((c) => c.inFlight));
  const ties = eligible.filter((c) => c.inFlight === least);
  if (ties.length === 1) return ties[0]?.conn;
  const index = Math.min(ties.length - 1, Math.floor(random() * ties.length));
  return ties[index]?.conn;
}
