/**
 * Parsers of single configuration values. Each takes the raw value (a string from a flag or an
 * environment variable, `text = true`, or a TOML value) and returns the typed value or throws
 * Invalid saying what was expected; the caller adds the key, the source and the bad value.
 */
import { ErrorCode, KiteqError } from "../errors.js";
import { MAX_NAME_BYTES } from "../publish/limits.js";
import { parseZkQuery } from "../registry/zk-connect.js";
import { ConnectionTargetError, parseConnectionTarget } from "../store/hosts.js";
import { type BindAddress, LOG_LEVELS, type LogLevel, type RedeliveryStep } from "./types.js";

/** A value parser's refusal: what was expected (and, for secrets, how to show the bad value). */
export class Invalid extends Error {
  constructor(
    readonly expected: string,
    /** Replaces the raw value in the message, e.g. to keep a secret out of it. */
    readonly shown?: string,
  ) {
    super(expected);
  }
}

/** Parses one raw value; `text` is true for flags and environment variables. */
export type Parser<T> = (raw: unknown, text: boolean) => T;

/** The registry as written (`static`, `file://path`, `zk://h:p,h:p?timeout=30s`). */
export type RegistrySpec =
  | { readonly kind: "static"; readonly file: string | null }
  | { readonly kind: "zookeeper"; readonly hosts: readonly string[]; readonly sessionTimeoutMs: number };

/** The admin address as written: an address, a bare port (on bind's host), or disabled. */
export type AdminSpec = BindAddress | { readonly host: null; readonly port: number } | null;

/** An integer in [min, max]; `expected` describes it, `expectedAbove` is said when above max. */
export function integer(
  min: number,
  max: number,
  expected: string,
  expectedAbove = `${expected} up to ${max}`,
): Parser<number> {
  return (raw, text) => {
    let n: number;
    if (text && typeof raw === "string" && /^[+-]?\d+$/.test(raw.trim())) n = Number(raw.trim());
    else if (!text && typeof raw === "number") n = raw;
    else throw new Invalid(expected);
    if (!Number.isInteger(n) || n < min) throw new Invalid(expected);
    if (n > max) throw new Invalid(expectedAbove);
    return n;
  };
}

/** Longest timer Node.js can set, in whole seconds (setTimeout takes up to 2^31-1 ms). */
const MAX_TIMER_SECONDS = 2_147_483;

export const positiveInt = integer(1, Number.MAX_SAFE_INTEGER, "a positive integer");
/**
 * Seconds that become an age or a delay in a timestamp (a redelivery delay, the 2PC give-up):
 * at most a year. Unbounded, 9999999999999 made an invalid date in every statement using it
 * (a nacked message held for ever, every transaction check pass failing).
 */
export const MAX_DELAY_SECONDS = 365 * 24 * 3600;
export const delaySeconds = integer(1, MAX_DELAY_SECONDS, "a positive integer");
/** Days of history kept: 0 (everything) up to a century (beyond, the cutoff is no date). */
export const retentionDaysValue = integer(0, 36_500, "a non-negative integer");
export const nonNegativeInt = integer(0, Number.MAX_SAFE_INTEGER, "a non-negative integer");
/** Seconds that become a timer: 1 up to about 24.8 days. */
export const timerSeconds = integer(1, MAX_TIMER_SECONDS, "a positive integer");
/** Smallest write buffer bound: a few ordinary frames (a bound below one push would close every consumer). */
export const MIN_WRITE_BUFFER_BYTES = 64 * 1024;
/** A byte count of at least MIN_WRITE_BUFFER_BYTES (the slow-reader bound). */
export const writeBufferBytes = integer(
  MIN_WRITE_BUFFER_BYTES,
  Number.MAX_SAFE_INTEGER,
  `a number of bytes, at least ${MIN_WRITE_BUFFER_BYTES}`,
);
const HOUR = "an hour, an integer from 0 to 23";
export const hourOfDay = integer(0, 23, HOUR, HOUR);

/**
 * Publish limits (see src/publish/limits.ts for the defaults and why). A name stays well below
 * PostgreSQL's index entry limit (about 2.7 kB: topic and groupId are indexed); properties stay
 * well inside a packet (2 MiB).
 */
export const nameBytesLimit = integer(1, MAX_NAME_BYTES, "a positive integer (bytes)");
export const propertiesLimit = integer(0, 10_000, "a non-negative integer");
export const propertiesBytesLimit = integer(0, 1024 * 1024, "a non-negative integer (bytes)");
/** A TCP port; 0 = a free port chosen at start. */
const PORT = "a port, 0 to 65535 (0 = any free port)";
export const port = integer(0, 65535, PORT, PORT);

/** Shortest admin token accepted: a guessable token is no protection. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

/** The admin HTTP bearer token: printable ASCII, no spaces, at least 16 characters. Never shown. */
export const adminToken: Parser<string> = (raw) => {
  const expected = `at least ${MIN_ADMIN_TOKEN_LENGTH} printable ASCII characters without spaces`;
  if (typeof raw !== "string") throw new Invalid(expected, "(not shown)");
  if (raw.length < MIN_ADMIN_TOKEN_LENGTH || !/^[\x21-\x7e]+$/.test(raw)) {
    throw new Invalid(expected, "(not shown)");
  }
  return raw;
};

/** A finite number >= 1 (a backoff factor). */
export const factor: Parser<number> = (raw, text) => {
  const n = text && typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
  if (typeof n !== "number" || !Number.isFinite(n) || n < 1) throw new Invalid("a number >= 1");
  return n;
};

export const boolean: Parser<boolean> = (raw, text) => {
  if (typeof raw === "boolean") return raw;
  if (text && raw === "true") return true;
  if (text && raw === "false") return false;
  throw new Invalid("true or false");
};

/** A non-empty string without control characters (a path, a name). */
export const nonEmptyString: Parser<string> = (raw) => {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (typeof raw !== "string" || raw === "" || /[\u0000-\u001f]/.test(raw)) {
    throw new Invalid("a non-empty string");
  }
  return raw;
};

const NAME = /^[A-Za-z0-9._-]+$/;

/** Topic names: comma-separated in text, an array of strings in TOML; letters, digits, . _ - */
export const topicList: Parser<string[]> = (raw, text) => {
  const expected = "a list of topic names (letters, digits, '.', '_', '-')";
  let items: unknown[];
  if (text && typeof raw === "string") items = raw.split(",").map((s) => s.trim());
  else if (!text && Array.isArray(raw)) items = raw;
  else throw new Invalid(expected);
  if (text && items.length === 1 && items[0] === "") return [];
  if (!items.every((t): t is string => typeof t === "string" && NAME.test(t))) throw new Invalid(expected);
  return [...new Set(items)];
};

export const logLevel: Parser<LogLevel> = (raw) => {
  const level = LOG_LEVELS.find((l) => l === raw);
  if (level === undefined) throw new Invalid(`one of ${LOG_LEVELS.join(", ")}`);
  return level;
};

/** A node id: letters, digits and . _ - : [ ] (it appears in claims and ZooKeeper paths). */
export const nodeId: Parser<string> = (raw) => {
  if (typeof raw !== "string" || !/^[A-Za-z0-9._:[\]-]+$/.test(raw)) {
    throw new Invalid("a node id of letters, digits, '.', '_', '-', ':', '[', ']'");
  }
  return raw;
};

const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

/** Splits `host:port`, `[v6]:port`, `:port` (and, if `defaultPort` is given, `host`). */
function hostPort(s: string, defaultPort: number | null, minPort: number): BindAddress | null {
  let host: string;
  let port: string | undefined;
  const v6 = /^\[([^\]]*)\](?::(.*))?$/.exec(s);
  if (v6) {
    host = v6[1] ?? "";
    port = v6[2];
    if (!IPV6.test(host) || !host.includes(":")) return null;
  } else {
    const colon = s.lastIndexOf(":");
    host = colon < 0 ? s : s.slice(0, colon);
    port = colon < 0 ? undefined : s.slice(colon + 1);
    if (host === "" && port !== undefined) host = "0.0.0.0";
    if (!HOST.test(host)) return null;
  }
  if (port === undefined) return defaultPort === null ? null : { host, port: defaultPort };
  if (!/^\d{1,5}$/.test(port)) return null;
  const n = Number(port);
  return n >= minPort && n <= 65535 ? { host, port: n } : null;
}

const BIND_EXPECTED = "host:port, [ipv6]:port or :port, port 0-65535";

export const bindAddress: Parser<BindAddress> = (raw) => {
  const addr = typeof raw === "string" ? hostPort(raw, null, 0) : null;
  if (addr === null) throw new Invalid(BIND_EXPECTED);
  return addr;
};

/**
 * Parses a listen address: `host:port`, `[::1]:port`, or `:port` (= 0.0.0.0:port).
 * Throws KiteqError(ConfigInvalid) on anything else.
 */
export function parseBind(s: string): BindAddress {
  try {
    return bindAddress(s, true);
  } catch (err) {
    if (!(err instanceof Invalid)) throw err;
    throw new KiteqError(
      ErrorCode.ConfigInvalid,
      `invalid bind address ${JSON.stringify(s)} (expected ${err.expected})`,
      { key: "bind" },
    );
  }
}

/** `-pport`: an address, a bare port (served on bind's host), or -1 / 0 / "off" = disabled. */
export const adminAddress: Parser<AdminSpec> = (raw, text) => {
  const expected = `${BIND_EXPECTED}; a bare port; or -1, 0 or off to disable`;
  const s = typeof raw === "number" && !text ? String(raw) : raw;
  if (typeof s !== "string") throw new Invalid(expected);
  if (s === "off" || /^(0|-\d+)$/.test(s)) return null;
  if (/^\d{1,5}$/.test(s)) {
    if (Number(s) > 65535) throw new Invalid(expected);
    return { host: null, port: Number(s) };
  }
  const addr = hostPort(s, null, 0);
  if (addr === null) throw new Invalid(expected);
  return addr;
};

/**
 * One PostgreSQL target: a postgres:// or postgresql:// URL (or libpq's keyword=value form) that
 * may name several hosts with target_session_attrs (store/hosts.ts parses it; a list of targets,
 * one per shard, must be split on whitespace, never on commas).
 */
export const postgresUrl: Parser<string> = (raw) => {
  const expected =
    "a postgres:// or postgresql:// URL (several hosts for failover: " +
    "postgresql://user:pw@hostA:5432,hostB:5432/db?target_session_attrs=read-write)";
  if (typeof raw !== "string") throw new Invalid(expected);
  const shown = JSON.stringify(redactUrl(raw));
  if (!/^postgres(ql)?:\/\//i.test(raw) && !KEYWORD_FORM.test(raw)) throw new Invalid(expected, shown);
  try {
    parseConnectionTarget(raw);
  } catch (err) {
    if (!(err instanceof ConnectionTargetError)) throw err;
    throw new Invalid(`a postgres:// or postgresql:// URL: ${err.message}`, shown);
  }
  return raw;
};

/**
 * One PostgreSQL target or several (the shards, in order): given as an array (cluster.toml), or
 * in one value separated by whitespace when every part is a postgres:// URL. Never split on
 * commas: one URL may name several hosts. A value in libpq's keyword=value form (`host=a,b
 * dbname=kiteq`, itself separated by spaces) is one target: give several by repeating --db.
 */
export const postgresUrlList: Parser<string[]> = (raw, text) => {
  let items: unknown[];
  if (Array.isArray(raw)) items = raw;
  else if (typeof raw === "string") {
    const parts = raw.split(/\s+/).filter((u) => u !== "");
    items = parts.length > 1 && parts.every((u) => /^postgres(ql)?:\/\//i.test(u)) ? parts : [raw.trim()];
  } else items = [raw];
  if (items.length === 0) throw new Invalid("one or more postgres:// URLs separated by spaces");
  return items.map((u) => postgresUrl(u, text));
};

/** libpq's keyword=value form (`host=a,b dbname=kiteq ...`), also accepted as a database URL. */
export const KEYWORD_FORM = /^\s*[A-Za-z_]+\s*=/;

/** The URL (or keyword=value string) with its password replaced by ***, for messages and logs. */
export function redactUrl(s: string): string {
  return s
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, "$1:***@")
    .replace(/(^|\s|[?&])password(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&']*)/g, "$1password$2***");
}

/** `static`, `file://path/registry.yaml` (static with KiteQ's YAML file) or `zk://h:p[,h:p][?timeout=30s]`. */
export const registry: Parser<RegistrySpec> = (raw) => {
  const expected = "static, file://<path> or zk://host:port[,host:port][?timeout=<n>s]";
  if (typeof raw !== "string") throw new Invalid(expected);
  if (raw === "static") return { kind: "static", file: null };
  if (raw.startsWith("file://")) {
    const file = raw.slice("file://".length);
    if (file === "") throw new Invalid(expected);
    return { kind: "static", file };
  }
  if (!raw.startsWith("zk://")) throw new Invalid(expected);
  const [hostList = "", query, ...more] = raw.slice("zk://".length).split("?");
  if (more.length > 0) throw new Invalid(expected);
  const hosts: string[] = [];
  for (const h of hostList.split(",")) {
    const addr = h.startsWith(":") ? null : hostPort(h.trim(), 2181, 1);
    if (addr === null) throw new Invalid(expected);
    hosts.push(addr.host.includes(":") ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`);
  }
  // The SDK's parser: both take and refuse the same timeouts.
  const parsed = parseZkQuery(query ?? "");
  if ("error" in parsed) throw new Invalid(`${expected}; ${parsed.error}`);
  const sessionTimeoutMs = parsed.sessionTimeoutMs ?? 30_000;
  return { kind: "zookeeper", hosts, sessionTimeoutMs };
};

/** A consumer/producer group id: letters, digits, . _ - (as in KiteQ's ZooKeeper paths). */
export function isGroupId(s: string): boolean {
  return NAME.test(s);
}

/** `KITEQ_SECRETS="g1=s1,g2=s2"`: a secret may contain '=' but not ','. Secrets never appear in errors. */
export const secretList: Parser<Map<string, string>> = (raw) => {
  const expected = "groupId=secret pairs separated by commas";
  if (typeof raw !== "string") throw new Invalid(expected, "(not shown)");
  const secrets = new Map<string, string>();
  for (const pair of raw.split(",")) {
    const eq = pair.indexOf("=");
    const group = (eq < 0 ? pair : pair.slice(0, eq)).trim();
    const secret = eq < 0 ? "" : pair.slice(eq + 1).trim();
    const shown = JSON.stringify(`${group}=***`);
    if (!isGroupId(group) || secret === "") throw new Invalid(`${expected}, each non-empty`, shown);
    if (secrets.has(group)) throw new Invalid(`${expected}, each group once`, shown);
    secrets.set(group, secret);
  }
  return secrets;
};

/**
 * The redelivery schedule: `"1:0,4:5,10:10"` (fromAttempt:delaySeconds) in text, an array of
 * `{ fromAttempt, delaySeconds }` tables in TOML. Starts at attempt 1, attempts increasing.
 */
const redeliveryDelay = integer(0, MAX_DELAY_SECONDS, "a non-negative integer");

export const redeliverySchedule: Parser<RedeliveryStep[]> = (raw, text) => {
  const expected = `fromAttempt:delaySeconds pairs (or {fromAttempt, delaySeconds} tables) starting at attempt 1, attempts increasing, delays from 0 to ${MAX_DELAY_SECONDS} (a year)`;
  let pairs: [unknown, unknown][];
  if (text && typeof raw === "string") {
    pairs = raw.split(",").map((p) => {
      const [a, d, ...rest] = p.trim().split(":");
      if (rest.length > 0) throw new Invalid(expected);
      return [a, d];
    });
  } else if (!text && Array.isArray(raw)) {
    pairs = raw.map((step: unknown) => {
      if (typeof step !== "object" || step === null || Array.isArray(step)) throw new Invalid(expected);
      const { fromAttempt, delaySeconds, ...rest } = step as Record<string, unknown>;
      if (Object.keys(rest).length > 0) throw new Invalid(expected);
      return [fromAttempt, delaySeconds];
    });
  } else {
    throw new Invalid(expected);
  }
  const steps: RedeliveryStep[] = [];
  for (const [a, d] of pairs) {
    const parse = (v: unknown, p: Parser<number>) => {
      try {
        return p(v, text);
      } catch {
        throw new Invalid(expected);
      }
    };
    const step = { fromAttempt: parse(a, positiveInt), delaySeconds: parse(d, redeliveryDelay) };
    const prev = steps.at(-1);
    if ((prev === undefined && step.fromAttempt !== 1) || (prev && step.fromAttempt <= prev.fromAttempt)) {
      throw new Invalid(expected);
    }
    steps.push(step);
  }
  if (steps.length === 0) throw new Invalid(expected);
  return steps;
};

/** A ConfigInvalid error: one line, with the setting's key in the context. */
export function configError(message: string, key: string, source?: string): KiteqError {
  return new KiteqError(ErrorCode.ConfigInvalid, message, source === undefined ? { key } : { key, source });
}

/** The raw value as it appears in messages: JSON, at most 100 characters. */
export function show(raw: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(raw) ?? String(raw);
  } catch {
    s = String(raw);
  }
  return s.length > 100 ? `${s.slice(0, 97)}...` : s;
}

/** Where a raw value came from: its setting, its name there (flag, variable, TOML key), the file. */
export interface ValueSite {
  readonly key: string;
  readonly name: string;
  /** The config file, for values read from one. */
  readonly file?: string;
}

/**
 * Runs a parser, turning its refusal into ConfigInvalid:
 * `invalid value for <name>[ in <file>]: <value> (expected <what>)`.
 */
export function parseAt<T>(parse: Parser<T>, raw: unknown, text: boolean, site: ValueSite): T {
  try {
    return parse(raw, text);
  } catch (err) {
    if (!(err instanceof Invalid)) throw err;
    const where = site.file === undefined ? site.name : `${site.name} in ${site.file}`;
    throw configError(
      `invalid value for ${where}: ${err.shown ?? show(raw)} (expected ${err.expected})`,
      site.key,
      site.file,
    );
  }
}
