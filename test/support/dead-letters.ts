/**
 * Dead letters for store, CLI and admin tests: what a consumer that fails every push leaves (the
 * deliveries claimed, then nacked at their deliver limit), through the broker's own statements.
 */
import type pg from "pg";
import { claimDueDeliveries, nackDeliveries } from "../../src/store/deliveries.js";

/**
 * Claim up to `limit` deliveries of `groupId` due at `now` and dead-letter them (one nack each,
 * attempt 1); returns how many.
 */
export async function deadLetterDue(
  pool: pg.Pool,
  groupId: string,
  options: { limit?: number; now?: Date; reason?: string } = {},
): Promise<number> {
  const now = options.now ?? new Date();
  const claimed = await claimDueDeliveries(pool, {
    groups: [groupId],
    limits: [options.limit ?? 1000],
    now: new Date(now.getTime() + 1),
    claimer: "t/1",
    leaseUntil: new Date(now.getTime() + 30_000),
  });
  if (claimed.length === 0) return 0;
  await nackDeliveries(
    pool,
    claimed.map((c) => ({
      messagePk: c.messagePk,
      groupId,
      claimEpoch: c.claimEpoch,
      attempt: 1,
      pushedAt: now,
      failedAt: new Date(now.getTime() + 2),
      nextAttemptAt: now,
      deadLetter: true,
      reason: options.reason ?? "refused",
    })),
    "t",
  );
  return claimed.length;
}
