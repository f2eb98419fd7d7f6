/**
 * Rate-limited warnings for what a hostile or broken peer can repeat at will (refused connections,
 * handshake timeouts): the first few of each kind one by one, then one summary line per interval
 * with the count. A minimal local counter for the protocol server; the broker-wide log limiter
 * may replace it.
 */
import type { Logger } from "../log.js";

/** Lines logged one by one per kind and interval before the rest are only counted. */
const BURST = 5;
/** Length of an interval, and the delay of its summary line. */
const INTERVAL_MS = 10_000;

interface Kind {
  /** Logged one by one in the current interval. */
  logged: number;
  /** Counted, not logged, in the current interval. */
  suppressed: number;
  timer: NodeJS.Timeout | undefined;
  fields: Record<string, unknown>;
  msg: string;
}

/** Counts warnings by kind and logs at most BURST of each, plus one summary, per interval. */
export class RefusalLog {
  private readonly kinds = new Map<string, Kind>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = INTERVAL_MS,
    private readonly burst = BURST,
  ) {}

  /** One occurrence of `kind` (e.g. an ErrorCode); `fields` and `msg` describe this one. */
  warn(kind: string, fields: Record<string, unknown>, msg: string): void {
    let k = this.kinds.get(kind);
    if (k === undefined) {
      k = { logged: 0, suppressed: 0, timer: undefined, fields, msg };
      this.kinds.set(kind, k);
    }
    if (k.timer === undefined) {
      const current = k;
      current.timer = setTimeout(() => this.endInterval(kind, current), this.intervalMs);
      current.timer.unref();
    }
    if (k.logged < this.burst) {
      k.logged++;
      this.log.warn(fields, msg);
      return;
    }
    k.suppressed++;
    k.fields = fields;
    k.msg = msg;
  }

  /** Occurrences counted but not logged so far, per kind (for tests and metrics). */
  suppressed(kind: string): number {
    return this.kinds.get(kind)?.suppressed ?? 0;
  }

  /** Log what is pending now and stop the timers. */
  stop(): void {
    for (const [kind, k] of this.kinds) {
      clearTimeout(k.timer);
      this.endInterval(kind, k);
    }
  }

  private endInterval(kind: string, k: Kind): void {
    k.timer = undefined;
    if (k.suppressed > 0) {
      this.log.warn(
        { ...k.fields, suppressed: k.suppressed, intervalSeconds: this.intervalMs / 1000 },
        `${k.msg} (${k.suppressed} more in the last ${this.intervalMs / 1000} s, not logged one by one)`,
      );
    }
    this.kinds.delete(kind);
  }
}
