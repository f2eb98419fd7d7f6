import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TokenBucket, watermarkBurst } from "../../../src/delivery/token-bucket.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";

describe("TokenBucket", () => {
  it("starts full and refuses once the burst is spent", () => {
    const b = new TokenBucket(10, 5, () => 0);
    for (let i = 0; i < 5; i++) expect(b.tryTake(1, 0)).toBe(true);
    expect(b.tryTake(1, 0)).toBe(false);
  });

  it("refills at the rate, using the time it is given", () => {
    const b = new TokenBucket(10, 5, () => 0);
    expect(b.tryTake(5, 0)).toBe(true);
    expect(b.tryTake(1, 99)).toBe(false); // 0.99 tokens
    expect(b.tryTake(1, 100)).toBe(true); // 1 token after 100 ms at 10/s
    expect(b.tryTake(1, 100)).toBe(false);
    expect(b.available(10_000)).toBe(5); // never above the burst
  });

  it("takes the time from the injected clock when none is given", () => {
    let now = 1_000;
    const b = new TokenBucket(1, 1, () => now);
    expect(b.tryTake()).toBe(true);
    expect(b.tryTake()).toBe(false);
    now += 1_000;
    expect(b.tryTake()).toBe(true);
  });

  it("takes nothing when it refuses a batch", () => {
    const b = new TokenBucket(10, 5, () => 0);
    expect(b.tryTake(3, 0)).toBe(true);
    expect(b.tryTake(3, 0)).toBe(false);
    expect(b.tryTake(2, 0)).toBe(true);
  });

  it("says how long until tokens are available, and that wait is enough", () => {
    const b = new TokenBucket(3, 3, () => 0);
    expect(b.msUntilAvailable(1, 0)).toBe(0);
    b.tryTake(3, 0);
    const wait = b.msUntilAvailable(1, 0);
    expect(wait).toBe(334); // 1/3 s, rounded up
    expect(b.tryTake(1, wait - 1)).toBe(false);
    expect(b.tryTake(1, wait)).toBe(true);
    // 0.002 tokens left over after 334 ms at 3/s: 1.998 more need 666 ms.
    expect(b.msUntilAvailable(2, wait)).toBe(666);
    expect(b.tryTake(2, wait + 665)).toBe(false);
    expect(b.tryTake(2, wait + 666)).toBe(true);
    expect(b.msUntilAvailable(4, wait)).toBe(Number.POSITIVE_INFINITY); // more than the burst
  });

  it("treats rate 0 as unlimited", () => {
    const b = new TokenBucket(0, 0, () => 0);
    for (let i = 0; i < 10_000; i++) expect(b.tryTake(1, 0)).toBe(true);
    expect(b.msUntilAvailable(1_000_000, 0)).toBe(0);
    expect(b.available(0)).toBe(Number.POSITIVE_INFINITY);
  });

  it("neither drains nor refills when time goes backwards", () => {
    const full = new TokenBucket(10, 1, () => 1_000);
    expect(full.tryTake(1, 500)).toBe(true);
  });

  it("does not refill when time goes backwards", () => {
    const b = new TokenBucket(10, 1, () => 1_000);
    expect(b.tryTake(1, 1_000)).toBe(true);
    expect(b.tryTake(1, 500)).toBe(false);
    expect(b.tryTake(1, 1_099)).toBe(false);
    expect(b.tryTake(1, 1_100)).toBe(true);
  });

  it("reconfigures rate and burst, dropping tokens above the new burst", () => {
    const b = new TokenBucket(100, 50, () => 0);
    b.reconfigure(10, 2, 0);
    expect(b.available(0)).toBe(2);
    expect(b.tryTake(2, 0)).toBe(true);
    expect(b.msUntilAvailable(1, 0)).toBe(100);
  });

  it("builds KiteQ's receive-permit bucket (burst = rate)", () => {
    const b = TokenBucket.forReceivePermits(8000, () => 0);
    expect(b.available(0)).toBe(8000);
    expect(b.tryTake(8000, 0)).toBe(true);
    expect(b.tryTake(1, 0)).toBe(false);
    expect(b.available(500)).toBe(4000);
  });

  it("builds a watermark bucket with burst half the watermark, at least 1", () => {
    expect(watermarkBurst(1000)).toBe(500);
    expect(watermarkBurst(6000)).toBe(3000);
    expect(watermarkBurst(3)).toBe(1);
    expect(watermarkBurst(1)).toBe(1);
    const b = TokenBucket.forWatermark(1000, () => 0);
    expect(b.tryTake(500, 0)).toBe(true);
    expect(b.tryTake(1, 0)).toBe(false);
    expect(b.tryTake(1, 1)).toBe(true); // 1 ms at 1000/s
    const slow = TokenBucket.forWatermark(1, () => 0);
    expect(slow.tryTake(1, 0)).toBe(true);
    expect(slow.tryTake(1, 999)).toBe(false);
    expect(slow.tryTake(1, 1000)).toBe(true);
  });

  it.each([
    [-1, 1],
    [Number.NaN, 1],
    [10, 0],
    [10, 0.5],
    [10, Number.NaN],
  ])("refuses rate %d with burst %d", (rate, burst) => {
    try {
      new TokenBucket(rate, burst, () => 0);
    } catch (err) {
      expect(err).toBeInstanceOf(KiteqError);
      expect((err as KiteqError).code).toBe(ErrorCode.ConfigInvalid);
      return;
    }
    throw new Error("expected ConfigInvalid");
  });

  it("never lets more than burst + rate x elapsed through (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 1, max: 100 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 1, max: 5 })), {
          maxLength: 200,
        }),
        (rate, burst, steps) => {
          const b = new TokenBucket(rate, burst, () => 0);
          let now = 0;
          let taken = 0;
          for (const [dt, n] of steps) {
            now += dt;
            if (b.tryTake(n, now)) taken += n;
            expect(taken).toBeLessThanOrEqual(burst + (rate * now) / 1000 + 1e-6);
          }
        },
      ),
    );
  });

  it("grants after msUntilAvailable whatever the rate (property)", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.1, max: 10_000, noNaN: true }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 10_000 }),
        (rate, n, start) => {
          const b = new TokenBucket(rate, 20, () => start);
          b.tryTake(20, start);
          const wait = b.msUntilAvailable(n, start);
          expect(b.tryTake(n, start + wait)).toBe(true);
        },
      ),
    );
  });
});
