/**
 * Redelivery schedule: how long to wait before the next push of a message to a group, given how
 * many attempts have been made. Pure; the dispatcher stores now + delay as next_attempt_at.
 */
import { ErrorCode, KiteqError } from "../errors.js";

/** From attempt `fromAttempt` on (until the next step), wait `delaySeconds` before retrying. */
export interface RedeliveryStep {
  readonly fromAttempt: number;
  readonly delaySeconds: number;
}

/**
 * KiteQ's schedule. KiteQ's windows are half-open [min, max): attempts 1-3 retry at once,
 * 4-9 wait 5 s, 10-19 10 s, 20-29 20 s, 30-39 40 s, 40-49 80 s, 50 and more 160 s.
 */
export const DEFAULT_REDELIVERY_SCHEDULE: readonly RedeliveryStep[] = Object.freeze([
  { fromAttempt: 1, delaySeconds: 0 },
  { fromAttempt: 4, delaySeconds: 5 },
  { fromAttempt: 10, delaySeconds: 10 },
  { fromAttempt: 20, delaySeconds: 20 },
  { fromAttempt: 30, delaySeconds: 40 },
  { fromAttempt: 40, delaySeconds: 80 },
  { fromAttempt: 50, delaySeconds: 160 },
]);

/**
 * Delay in milliseconds before the next attempt, after `attempts` attempts have been made (the
 * one that just failed included; KiteQ's deliverCount). Attempt n uses the last step whose
 * fromAttempt <= n; an attempts count below 1 uses the first step. The schedule is assumed
 * valid (check configured ones once with validateSchedule). A non-finite count throws Internal.
 */
export function redeliveryDelayMs(
  attempts: number,
  schedule: readonly RedeliveryStep[] = DEFAULT_REDELIVERY_SCHEDULE,
): number {
  if (!Number.isFinite(attempts)) {
    throw new KiteqError(ErrorCode.Internal, `redelivery: attempts must be a finite number, got ${attempts}`);
  }
  let delaySeconds = schedule[0]?.delaySeconds ?? 0;
  for (const step of schedule) {
    if (step.fromAttempt > attempts) break;
    delaySeconds = step.delaySeconds;
  }
  return Math.round(delaySeconds * 1000);
}

/**
 * Check a configured schedule: at least one step, the first from attempt 1, fromAttempt
 * integers strictly increasing, delays finite and >= 0. Returns it; throws ConfigInvalid.
 */
export function validateSchedule(steps: readonly RedeliveryStep[]): readonly RedeliveryStep[] {
  const fail = (message: string): never => {
    throw new KiteqError(ErrorCode.ConfigInvalid, `redelivery schedule: ${message}`);
  };
  if (steps.length === 0) fail("needs at least one step");
  steps.forEach((step, i) => {
    if (!Number.isInteger(step.fromAttempt) || step.fromAttempt < 1) {
      fail(`step ${i}: fromAttempt must be an integer >= 1, got ${step.fromAttempt}`);
    }
    if (!Number.isFinite(step.delaySeconds) || step.delaySeconds < 0) {
      fail(`step ${i}: delaySeconds must be a number >= 0, got ${step.delaySeconds}`);
    }
    if (i === 0 && step.fromAttempt !== 1)
      fail(`the first step must start at attempt 1, got ${step.fromAttempt}`);
    const previous = steps[i - 1];
    if (previous !== undefined && step.fromAttempt <= previous.fromAttempt) {
      fail(
        `steps must be sorted by fromAttempt: step ${i} (${step.fromAttempt}) ` +
          `after step ${i - 1} (${previous.fromAttempt})`,
      );
    }
  });
  return steps;
}
