/** What the schedule settings mean, in one place: the delays the delivery and tx code apply. */
import type { TxCheckConfig } from "./types.js";

/**
 * Seconds between check number `check` (1 = the first TxACK) and the previous one (or the
 * message's receipt, for the first): firstCheckSeconds x backoffFactor^(check-1), at most
 * maxIntervalSeconds. Whether to give up is the caller's: after giveUpSeconds since receipt.
 */
export function txCheckDelaySeconds(tx: TxCheckConfig, check: number): number {
  const delay = tx.firstCheckSeconds * tx.backoffFactor ** Math.max(0, check - 1);
  return Math.min(delay, tx.maxIntervalSeconds);
}
