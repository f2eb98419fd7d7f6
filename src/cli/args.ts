/**
 * The CLI's own flags (beside the config flags): their names, and typed readers that turn a bad
 * value into a UsageError (one line, exit 2).
 */

/** Exit code of a usage error (as for an invalid configuration). */
export const USAGE_EXIT_CODE = 2;

/** A command line the CLI cannot act on; printed as one line, exit USAGE_EXIT_CODE. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Flags that take a value, for every command (parseFlags needs them all to find positionals). */
export const VALUE_FLAGS = [
  "group",
  "topic",
  "message-type",
  "type",
  "watermark",
  "persistent",
  "message-id",
  "since",
  "until",
  "limit",
  "expires-in",
  "body",
  "count",
  "host",
  "port",
  "timeout",
  "brokers",
  "deliver-in",
  "rate",
] as const;

/** Flags without a value. */
export const BOOLEAN_FLAGS = ["json", "help", "h", "verbose", "dry-run"] as const;

export type CliFlag = (typeof VALUE_FLAGS)[number] | (typeof BOOLEAN_FLAGS)[number];

/** parseFlags' knownExtra for the CLI. */
export const KNOWN_EXTRA: readonly string[] = [...VALUE_FLAGS.map((f) => `${f}=`), ...BOOLEAN_FLAGS];

/** The CLI flags given to one command, with typed readers. */
export class CommandArgs {
  constructor(
    /** e.g. "bind add", for messages. */
    readonly command: string,
    private readonly flags: Readonly<Record<string, string>>,
    allowed: readonly CliFlag[],
  ) {
    for (const name of Object.keys(flags)) {
      const cli = (VALUE_FLAGS as readonly string[]).includes(name) || name === "json";
      if (cli && !(allowed as readonly string[]).includes(name)) {
        throw new UsageError(`${command}: flag --${name} does not apply`);
      }
    }
  }

  /** A value, or undefined when not given; an empty value is an error. */
  optional(name: CliFlag): string | undefined {
    const v = this.flags[name];
    if (v === "") throw new UsageError(`${this.command}: --${name} needs a value`);
    return v;
  }

  required(name: CliFlag): string {
    const v = this.optional(name);
    if (v === undefined) throw new UsageError(`${this.command}: --${name} is required`);
    return v;
  }

  /**
   * Whether a flag was given. A switch (--json, --verbose) may say true or false (`--json=false`
   * was taken as --json); any other value is an error.
   */
  has(name: CliFlag): boolean {
    if ((BOOLEAN_FLAGS as readonly string[]).includes(name)) return this.bool(name, false);
    return this.flags[name] !== undefined;
  }

  /** An integer in [min, max], or `fallback` when not given. */
  int(name: CliFlag, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.optional(name);
    if (v === undefined) return fallback;
    const n = /^-?\d+$/.test(v.trim()) ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      // No bound given: "at least 1", not "from 1 to 9007199254740991".
      const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
      throw new UsageError(`${this.command}: --${name} must be an integer ${range}, got "${v}"`);
    }
    return n;
  }

  /** true/false (also yes/no, 1/0), or `fallback` when not given. */
  bool(name: CliFlag, fallback: boolean): boolean {
    const v = this.optional(name)?.trim().toLowerCase();
    if (v === undefined) return fallback;
    if (["true", "yes", "1"].includes(v)) return true;
    if (["false", "no", "0"].includes(v)) return false;
    throw new UsageError(`${this.command}: --${name} must be true or false, got "${v}"`);
  }

  /** One of `choices`, or `fallback` when not given. */
  choice<T extends string>(name: CliFlag, choices: readonly T[], fallback: T): T {
    const v = this.optional(name);
    if (v === undefined) return fallback;
    const c = choices.find((x) => x === v.toLowerCase());
    if (c === undefined) {
      throw new UsageError(`${this.command}: --${name} must be one of ${choices.join(", ")}, got "${v}"`);
    }
    return c;
  }

  /** A point in time (see parseTime), or `fallback` when not given. */
  time(name: CliFlag, now: Date, fallback?: Date): Date {
    const v = this.optional(name);
    if (v === undefined) {
      if (fallback === undefined) throw new UsageError(`${this.command}: --${name} is required`);
      return fallback;
    }
    const t = parseTime(v, now);
    if (t === undefined) {
      throw new UsageError(
        `${this.command}: --${name} must be an ISO 8601 time between 1970 and 9999 (2026-05-01T12:00:00Z; UTC without an offset), "now", or a duration ago (90s, 15m, 2h, 7d), got "${v}"`,
      );
    }
    return t;
  }

  /** A KiteQ message id (32 hex), lower-cased as the broker stores it. */
  messageId(name: CliFlag = "message-id"): string {
    const v = this.required(name).trim();
    if (!isMessageId(v)) {
      throw new UsageError(`${this.command}: --${name} must be 32 hexadecimal characters, got "${v}"`);
    }
    return v.toLowerCase();
  }
}

/** Whether `s` is a KiteQ message id (32 hexadecimal characters, any case). */
export function isMessageId(s: string): boolean {
  return /^[0-9a-fA-F]{32}$/.test(s);
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The latest time accepted (9999-12-31T23:59:59.999Z): beyond it JavaScript and PostgreSQL disagree. */
const LATEST_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * A time from the command line or the admin API: ISO 8601 (a date alone is midnight UTC, a date
 * and time without an offset is UTC too), "now", or a duration ago such as "90s", "15m", "2h",
 * "7d". undefined when it is none of these, names a day that does not exist (2026-02-31), or
 * falls outside 1970..9999 (a huge duration made a 500 or "Invalid time value" before).
 */
export function parseTime(text: string, now: Date): Date | undefined {
  const v = text.trim();
  if (v === "now") return new Date(now.getTime());
  const ago = /^(\d{1,15})([smhd])$/.exec(v);
  const inRange = (ms: number) =>
    Number.isFinite(ms) && ms >= 0 && ms <= LATEST_MS ? new Date(ms) : undefined;
  if (ago) return inRange(now.getTime() - Number(ago[1]) * (UNIT_MS[ago[2] ?? "s"] ?? 1000));
  const day = /^(\d{4})-(\d{2})-(\d{2})/.exec(v);
  if (!day) return undefined;
  const [y, m, d] = [Number(day[1]), Number(day[2]), Number(day[3])];
  // Date.parse rolls 2026-02-31 over to March 3rd.
  if (m < 1 || m > 12 || d < 1 || d > new Date(Date.UTC(y, m, 0)).getUTCDate()) return undefined;
  // A time of day without Z or an offset: UTC, as a date alone is (JavaScript would take the
  // process's time zone).
  const zoned = /[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(v) ? `${v}Z` : v;
  return inRange(Date.parse(zoned));
}
