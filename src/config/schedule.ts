/** What the schedule settings mean, in one place: the delays the delivery and tx code apply. */
import type { RedeliveryStep, TxCheckConfig } from "./types.js";

/**
 * Seconds to wait, after a failed attempt, before delivery attempt number `attempt` (1 = the
 * first delivery): the delay of the last step whose fromAttempt is not above `attempt`.
 * With KiteQ's default, attempts 2-3 go at once, 4-9 after 5 s, 10-19 after 10 s, ... 50+ after 160 s.
 */
export function redeliveryDelaySeconds(schedule: readonly RedeliveryStep[], attempt: number): number {
  let delay = 0;
  for (const step of schedule) {
    if (step.fromAttempt > attempt) break;
    delay = step.delaySeconds;
  }
  return delay;
}

/**
 * Seconds between check number `check` (1 = the first TxACK) and the previous one (or the
 * message's receipt, for the first): firstCheckSeconds x backoffFactor^(check-1), at most
 * maxIntervalSeconds. Whether to give up is the caller's: after giveUpSeconds since receipt.
 */
export function txCheckDelaySeconds(tx: TxCheckConfig, check: number): number {
  const delay = tx.firstCheckSeconds * tx.backoffFactor ** Math.max(0, check - 1);
  return Math.min(delay, tx.maxIntervalSeconds);
}
