import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_REDELIVERY_SCHEDULE,
  type RedeliveryStep,
  redeliveryDelayMs,
  validateSchedule,
} from "../../../src/delivery/schedule.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";

describe("redelivery schedule", () => {
  it.each([
    [1, 0],
    [2, 0],
    [3, 0],
    [4, 5_000],
    [9, 5_000],
    [10, 10_000],
    [11, 10_000],
    [19, 10_000],
    [20, 20_000],
    [29, 20_000],
    [30, 40_000],
    [39, 40_000],
    [40, 80_000],
    [49, 80_000],
    [50, 160_000],
    [100, 160_000],
    [1_000_000, 160_000],
  ])("after %i attempts waits %i ms by default (KiteQ's windows)", (attempts, ms) => {
    expect(redeliveryDelayMs(attempts)).toBe(ms);
  });

  it("uses the first step below attempt 1", () => {
    expect(redeliveryDelayMs(0)).toBe(0);
    expect(redeliveryDelayMs(-3)).toBe(0);
  });

  it("refuses a non-finite attempt count", () => {
    expect(() => redeliveryDelayMs(Number.NaN)).toThrow(KiteqError);
    expect(() => redeliveryDelayMs(Number.POSITIVE_INFINITY)).toThrow(/finite/);
  });

  it("follows a configured schedule, with fractional seconds", () => {
    const schedule = validateSchedule([
      { fromAttempt: 1, delaySeconds: 0.25 },
      { fromAttempt: 2, delaySeconds: 1.5 },
    ]);
    expect(redeliveryDelayMs(1, schedule)).toBe(250);
    expect(redeliveryDelayMs(2, schedule)).toBe(1500);
    expect(redeliveryDelayMs(99, schedule)).toBe(1500);
  });

  it("never decreases with more attempts for the default schedule (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 0, max: 100 }), (n, k) => {
        expect(redeliveryDelayMs(n + k)).toBeGreaterThanOrEqual(redeliveryDelayMs(n));
      }),
    );
  });

  it("accepts the default schedule", () => {
    expect(validateSchedule(DEFAULT_REDELIVERY_SCHEDULE)).toBe(DEFAULT_REDELIVERY_SCHEDULE);
  });

  it.each<[string, RedeliveryStep[], RegExp]>([
    ["empty", [], /at least one step/],
    ["not starting at 1", [{ fromAttempt: 2, delaySeconds: 0 }], /first step must start at attempt 1/],
    [
      "unsorted",
      [
        { fromAttempt: 1, delaySeconds: 0 },
        { fromAttempt: 5, delaySeconds: 1 },
        { fromAttempt: 4, delaySeconds: 2 },
      ],
      /sorted by fromAttempt: step 2 \(4\) after step 1 \(5\)/,
    ],
    [
      "duplicate fromAttempt",
      [
        { fromAttempt: 1, delaySeconds: 0 },
        { fromAttempt: 1, delaySeconds: 1 },
      ],
      /sorted/,
    ],
    ["negative delay", [{ fromAttempt: 1, delaySeconds: -1 }], /delaySeconds must be a number >= 0/],
    ["NaN delay", [{ fromAttempt: 1, delaySeconds: Number.NaN }], /delaySeconds/],
    [
      "fractional fromAttempt",
      [
        { fromAttempt: 1, delaySeconds: 0 },
        { fromAttempt: 2.5, delaySeconds: 0 },
      ],
      /fromAttempt must be an integer/,
    ],
    ["zero fromAttempt", [{ fromAttempt: 0, delaySeconds: 0 }], /fromAttempt must be an integer >= 1/],
  ])("refuses a schedule that is %s", (_name, steps, message) => {
    try {
      validateSchedule(steps);
    } catch (err) {
      expect(err).toBeInstanceOf(KiteqError);
      expect((err as KiteqError).code).toBe(ErrorCode.ConfigInvalid);
      expect((err as KiteqError).message).toMatch(message);
      return;
    }
    throw new Error("expected ConfigInvalid");
  });
});
