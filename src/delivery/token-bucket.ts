/**
 * A token bucket with time as a parameter (tests pass timestamps, nothing sleeps). Used for the
 * broker's receive permits (KiteQ's recievePermitsPerSecond) and for each group's watermark.
 */
import { ErrorCode, KiteqError } from "../errors.js";

/** Tolerance for floating-point refill, so waiting msUntilAvailable really is enough. */
const EPSILON = 1e-9;

/**
 * Holds up to `burst` tokens, refilled continuously at `ratePerSecond`; starts full.
 * A rate of 0 means unlimited: every take succeeds. Time going backwards refills nothing.
 */
export class TokenBucket {
  private rate = 0;
  private capacity = 0;
  private tokens = 0;
  private lastMs: number;

  constructor(
    ratePerSecond: number,
    burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.lastMs = now();
    this.reconfigure(ratePerSecond, burst, this.lastMs);
    this.tokens = this.capacity;
  }

  /** KiteQ's receive protection: `permitsPerSecond` (0 = unlimited), burst equal to the rate. */
  static forReceivePermits(permitsPerSecond: number, now?: () => number): TokenBucket {
    return new TokenBucket(permitsPerSecond, permitsPerSecond, now);
  }

  /** A group's watermark: `watermark` messages per second, burst half of it (at least 1). */
  static forWatermark(watermark: number, now?: () => number): TokenBucket {
    return new TokenBucket(watermark, watermarkBurst(watermark), now);
  }

  /** Change rate and burst (e.g. a binding's watermark changed); tokens above the new burst are dropped. */
  reconfigure(ratePerSecond: number, burst: number, nowMs: number = this.now()): void {
    if (!Number.isFinite(ratePerSecond) || ratePerSecond < 0) {
      throw new KiteqError(ErrorCode.ConfigInvalid, `token bucket: rate must be >= 0, got ${ratePerSecond}`);
    }
    if (ratePerSecond > 0 && (!Number.isFinite(burst) || burst < 1)) {
      throw new KiteqError(ErrorCode.ConfigInvalid, `token bucket: burst must be >= 1, got ${burst}`);
    }
    this.refill(nowMs);
    this.rate = ratePerSecond;
    this.capacity = ratePerSecond === 0 ? 0 : burst;
    this.tokens = Math.min(this.tokens, this.capacity);
  }

  /** Take `n` tokens if available now; false (and nothing taken) otherwise. */
  tryTake(n = 1, nowMs: number = this.now()): boolean {
    if (this.rate === 0 || n <= 0) return true;
    this.refill(nowMs);
    if (this.tokens + EPSILON < n) return false;
    this.tokens = Math.max(0, this.tokens - n);
    return true;
  }

  /**
   * Milliseconds until `n` tokens are available (0 = now), assuming nobody else takes any.
   * Infinity when `n` exceeds the burst: that many can never be taken at once.
   */
  msUntilAvailable(n = 1, nowMs: number = this.now()): number {
    if (this.rate === 0 || n <= 0) return 0;
    if (n > this.capacity) return Number.POSITIVE_INFINITY;
    this.refill(nowMs);
    const missing = n - this.tokens;
    if (missing <= EPSILON) return 0;
    return Math.ceil((missing * 1000) / this.rate);
  }

  /** Tokens available now (fractional); Infinity when unlimited. */
  available(nowMs: number = this.now()): number {
    if (this.rate === 0) return Number.POSITIVE_INFINITY;
    this.refill(nowMs);
    return this.tokens;
  }

  private refill(nowMs: number): void {
    if (nowMs > this.lastMs) {
      this.tokens = Math.min(this.capacity, this.tokens + ((nowMs - this.lastMs) * this.rate) / 1000);
      this.lastMs = nowMs;
    }
  }
}

/** The burst of a watermark bucket: half the watermark, at least 1. */
export function watermarkBurst(watermark: number): number {
  return Math.max(1, Math.floor(watermark / 2));
}
