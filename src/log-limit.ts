/**
 * Rate-limited logging for errors that repeat once per message on hot paths (a database that is
 * down refuses every publish: without a limit that is one log line per message, tens of
 * thousands in a few seconds). Per key: the first `first` occurrences are logged one by one;
 * after that only one summary line per `intervalMs` with the number not logged. A key that was
 * quiet for a whole interval starts again with `first` lines.
 *
 * LogRateLimiter is the pure part (time is a parameter); RateLimitedLog puts it in front of a
 * Logger and writes the summaries from an unref'd timer.
 */
import type { Logger } from "./log.js";

/** Options of a LogRateLimiter / RateLimitedLog. */
export interface LogLimitOptions {
  /** Occurrences of a key logged one by one before the summaries take over; default 5. */
  first?: number;
  /** Length of a summary interval (ms); default 10 s. */
  intervalMs?: number;
}

/** What a summary line reports for one key. */
export interface LogSummary {
  key: string;
  /** Occurrences not logged since the previous summary. */
  suppressed: number;
  /** Occurrences since the key's burst started (logged or not). */
  total: number;
  /** When the last of them happened (the summary comes up to an interval later). */
  lastAtMs: number;
}

interface KeyState {
  /** Occurrences logged one by one in the current burst. */
  logged: number;
  suppressed: number;
  total: number;
  /** When the summary of the suppressed ones is due (only while suppressed > 0). */
  summaryAtMs: number;
  lastAtMs: number;
}

const DEFAULT_FIRST = 5;
const DEFAULT_INTERVAL_MS = 10_000;

/** The counting behind RateLimitedLog (see module comment); no I/O, no clock. */
export class LogRateLimiter {
  readonly first: number;
  readonly intervalMs: number;
  private readonly keys = new Map<string, KeyState>();

  constructor(options: LogLimitOptions = {}) {
    this.first = options.first ?? DEFAULT_FIRST;
    this.intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  }

  /** One occurrence of `key` at `nowMs`: true = log it, false = counted for the next summary. */
  admit(key: string, nowMs: number): boolean {
    let s = this.keys.get(key);
    if (s === undefined || (s.suppressed === 0 && nowMs - s.lastAtMs >= this.intervalMs)) {
      s = { logged: 0, suppressed: 0, total: 0, summaryAtMs: 0, lastAtMs: nowMs };
      this.keys.set(key, s);
    }
    s.total++;
    s.lastAtMs = nowMs;
    if (s.logged < this.first) {
      s.logged++;
      return true;
    }
    if (s.suppressed === 0) s.summaryAtMs = nowMs + this.intervalMs;
    s.suppressed++;
    return false;
  }

  /** Summaries due at `nowMs` (each key's count restarts); keys quiet for an interval are forgotten. */
  takeDue(nowMs: number): LogSummary[] {
    const out: LogSummary[] = [];
    for (const [key, s] of this.keys) {
      if (s.suppressed > 0 && s.summaryAtMs <= nowMs) {
        out.push({ key, suppressed: s.suppressed, total: s.total, lastAtMs: s.lastAtMs });
        s.suppressed = 0;
      } else if (s.suppressed === 0 && nowMs - s.lastAtMs >= this.intervalMs) {
        this.keys.delete(key);
      }
    }
    return out;
  }

  /** Earliest time a summary is due, or undefined when nothing is suppressed. */
  nextDueMs(): number | undefined {
    let next: number | undefined;
    for (const s of this.keys.values()) {
      if (s.suppressed > 0 && (next === undefined || s.summaryAtMs < next)) next = s.summaryAtMs;
    }
    return next;
  }
}

type Level = "error" | "warn" | "info";

interface LastLine {
  level: Level;
  fields: Record<string, unknown>;
  msg: string;
}

/**
 * A Logger front for repeated errors (see module comment). `key` groups occurrences (usually the
 * message text plus the error code); the summary line repeats the fields and text of the last
 * occurrence not logged, with `suppressed` and `total` counts.
 */
export class RateLimitedLog {
  private readonly limiter: LogRateLimiter;
  private readonly last = new Map<string, LastLine>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    options: LogLimitOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.limiter = new LogRateLimiter(options);
  }

  error(key: string, fields: Record<string, unknown>, msg: string): void {
    this.write("error", key, fields, msg);
  }

  warn(key: string, fields: Record<string, unknown>, msg: string): void {
    this.write("warn", key, fields, msg);
  }

  info(key: string, fields: Record<string, unknown>, msg: string): void {
    this.write("info", key, fields, msg);
  }

  /** Write the summaries due now (the timer calls this; tests may too). */
  flush(nowMs = this.now()): void {
    for (const s of this.limiter.takeDue(nowMs)) {
      const line = this.last.get(s.key);
      if (line === undefined) continue;
      // A summary comes up to an interval after what it counts, often once the fault is over (a
      // walkthrough: "claiming deliveries failed" 2 s after "publishes are stored again"): it
      // says when the last one happened, so that it does not read as a new failure.
      const lastAt = new Date(s.lastAtMs).toISOString();
      this.log[line.level](
        { ...line.fields, suppressed: s.suppressed, total: s.total, lastAt },
        `${line.msg} (${s.suppressed} more not logged one by one, the last at ${lastAt})`,
      );
    }
    this.arm(nowMs);
  }

  /** Write what is still owed and stop the timer. */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.flush(Number.POSITIVE_INFINITY);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private write(level: Level, key: string, fields: Record<string, unknown>, msg: string): void {
    const nowMs = this.now();
    if (this.limiter.admit(key, nowMs)) {
      this.log[level](fields, msg);
      return;
    }
    this.last.set(key, { level, fields, msg });
    this.arm(nowMs);
  }

  private arm(nowMs: number): void {
    if (this.timer !== undefined) return;
    const due = this.limiter.nextDueMs();
    if (due === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.flush();
      },
      Math.max(0, Math.min(due - nowMs, 2_147_483_647)),
    );
    this.timer.unref();
  }
}
