/**
 * How far this node's clock is from the database's, read with every heartbeat. Leases, due times
 * and expiry are written with the node's own clock and compared with the other nodes' (a claim
 * takes a delivery whose lease_until is before its own now): a node whose clock runs ahead takes
 * the others' deliveries over before their leases end (pushed twice), one behind leaves a dead
 * node's deliveries longer than its lease; a message published in SQL (kiteq_publish) is due by
 * the database's clock. NTP keeps clocks within milliseconds; a node off by a
 * second or more says so once, and again when it is back in step (KQ_CLOCK_SKEW), and the
 * kiteq_node_clock_skew_seconds gauge shows the reading.
 */
import type { Logger } from "../log.js";

/** Off by more than this (beyond the reading's own uncertainty) is logged. */
export const CLOCK_SKEW_WARN_MS = 1000;

/** One heartbeat: when it was sent and answered (this node's clock), and the database's time in it. */
export interface ClockReading {
  sentMs: number;
  receivedMs: number;
  databaseMs: number;
}

/**
 * The node's clock minus the database's (positive: the node is ahead), taking the database's time
 * as read half-way through the round trip; `uncertaintyMs` is half the round trip (the most that
 * guess can be wrong by).
 */
export function skewOf(r: ClockReading): { skewMs: number; uncertaintyMs: number } {
  const uncertaintyMs = Math.max(0, (r.receivedMs - r.sentMs) / 2);
  return { skewMs: (r.sentMs + r.receivedMs) / 2 - r.databaseMs, uncertaintyMs };
}

/** Follows the readings; logs a change between in step and off (see module comment). */
export class ClockSkewWatch {
  private skewMs: number | undefined;
  private off = false;

  constructor(
    private readonly log: Logger,
    private readonly warnMs = CLOCK_SKEW_WARN_MS,
  ) {}

  /** The last reading's skew in seconds (node minus database), or undefined before the first. */
  get skewSeconds(): number | undefined {
    return this.skewMs === undefined ? undefined : this.skewMs / 1000;
  }

  observe(reading: ClockReading): void {
    const { skewMs, uncertaintyMs } = skewOf(reading);
    this.skewMs = skewMs;
    const beyond = Math.abs(skewMs) - uncertaintyMs;
    if (!this.off && beyond > this.warnMs) {
      this.off = true;
      const seconds = Math.round(Math.abs(skewMs) / 100) / 10;
      this.log.warn(
        { code: "KQ_CLOCK_SKEW", skewSeconds: Math.round(skewMs) / 1000 },
        `this node's clock is ${seconds} s ${skewMs > 0 ? "ahead of" : "behind"} the database's: leases and due times are written with each node's clock, so ${
          skewMs > 0
            ? "it may take other nodes' deliveries over before their leases end (pushed twice)"
            : "other nodes may take its deliveries over before its leases end (pushed twice), and its heartbeats look late (unresponsive) to them"
        }; sync its time (NTP), or the database server's if every node says so`,
      );
    } else if (this.off && beyond <= this.warnMs / 2) {
      // Back within half the threshold: a clock hovering at it does not log at every heartbeat.
      this.off = false;
      this.log.info(
        { code: "KQ_CLOCK_SKEW", skewSeconds: Math.round(skewMs) / 1000 },
        "this node's clock is in step with the database's again",
      );
    }
  }
}
