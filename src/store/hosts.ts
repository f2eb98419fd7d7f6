/**
 * One database target as libpq reads it: a connection string that may name several hosts, and
 * `target_session_attrs`, the kind of server wanted among them. node-postgres connects to one host
 * only, so this module turns a target into one single-host connection string per host (what pg is
 * given) and chooses among probed servers. Pure: the connecting is in failover.ts.
 *
 * Accepted forms (as libpq):
 * - `postgresql://user:pw@hostA:5432,hostB:5433/db?target_session_attrs=read-write`
 * - `postgresql:///db?host=a,b&port=5432,5433&target_session_attrs=read-write` (one port: all)
 * - `host=a,b port=5432,5433 dbname=db user=u target_session_attrs=read-write` (keyword/value)
 *
 * A multi-host target has commas of its own: a list of targets (one per shard) is split on
 * whitespace, or given by repeating the flag, never on commas.
 */

/** libpq's values of `target_session_attrs`. */
export const TARGET_SESSION_ATTRS = [
  "any",
  "read-write",
  "read-only",
  "primary",
  "standby",
  "prefer-standby",
] as const;

/** The kind of server a target wants (libpq's `target_session_attrs`). */
export type TargetSessionAttrs = (typeof TARGET_SESSION_ATTRS)[number];

/** One host of a target; null parts are pg's defaults (PGHOST / localhost, PGPORT / 5432). */
export interface HostAddress {
  /** A host name, an IP address (IPv6 without brackets), or a Unix socket directory (`/...`). */
  readonly host: string | null;
  readonly port: number | null;
}

/** A parsed target: its hosts in order, the wanted server kind, and pg's strings per host. */
export interface ConnectionTarget {
  readonly hosts: readonly HostAddress[];
  readonly targetSessionAttrs: TargetSessionAttrs;
  /** A single-host `postgresql://` string per host (same order), without target_session_attrs. */
  readonly hostUrls: readonly string[];
  /** True when pg can be given hostUrls[0] as it is: one host, any server will do. */
  readonly direct: boolean;
}

/** A connection string that cannot be used; the message is one line and shows no password. */
export class ConnectionTargetError extends Error {
  override readonly name = "ConnectionTargetError";
}

/** What a probe of a server found (see STATE_QUERY in failover.ts). */
export interface ServerState {
  /** pg_is_in_recovery(): a standby. */
  readonly inRecovery: boolean;
  /** transaction_read_only: writes are refused (a standby, or default_transaction_read_only). */
  readonly readOnly: boolean;
}

/** `host:port` of a host for messages (the socket directory, or "default"). */
export function hostLabel(h: HostAddress): string {
  const host = h.host === null ? "default" : h.host.includes(":") ? `[${h.host}]` : h.host;
  return h.port === null ? host : `${host}:${h.port}`;
}

/** Whether a server in `state` is one `attrs` accepts (prefer-standby's fallback aside). */
export function qualifies(attrs: TargetSessionAttrs, state: ServerState): boolean {
  switch (attrs) {
    case "any":
      return true;
    case "read-write":
      return !state.readOnly;
    case "read-only":
      return state.readOnly;
    case "primary":
      return !state.inRecovery;
    case "standby":
    case "prefer-standby":
      return state.inRecovery;
  }
}

/** What a server in `state` is, in words (for "no read-write server" messages). */
export function describeState(state: ServerState): string {
  if (state.inRecovery) return "a standby (in recovery)";
  return state.readOnly ? "a primary in read-only mode" : "a read-write primary";
}

/**
 * SQLSTATE of a statement refused because the server is not (or no longer) a writable primary:
 * 25006 read_only_sql_transaction. A connection that gets it is dropped and the host chosen anew.
 */
export const NOT_WRITABLE_SQLSTATE = "25006";

/** Whether `attrs` asks for a server that takes writes (so 25006 means: choose again). */
export function wantsWritable(attrs: TargetSessionAttrs): boolean {
  return attrs === "read-write" || attrs === "primary";
}

/** The host chosen by selectHost, and what its probe found. */
export interface SelectedHost {
  readonly index: number;
  readonly state: ServerState;
}

/**
 * libpq's choice: try the hosts in order and take the first whose server `attrs` accepts;
 * prefer-standby takes the first reachable one when none is a standby. `probe` connects to a
 * host and reads its state (or throws). Throws ConnectionTargetError naming every host and why
 * it was passed over.
 */
export async function selectHost(
  target: Pick<ConnectionTarget, "hosts" | "targetSessionAttrs">,
  probe: (host: HostAddress, index: number) => Promise<ServerState>,
): Promise<SelectedHost> {
  const attrs = target.targetSessionAttrs;
  const passedOver: string[] = [];
  let firstReachable: SelectedHost | undefined;
  for (const [index, host] of target.hosts.entries()) {
    let state: ServerState;
    try {
      state = await probe(host, index);
    } catch (err) {
      passedOver.push(`${hostLabel(host)} (${reason(err)})`);
      continue;
    }
    if (qualifies(attrs, state)) return { index, state };
    firstReachable ??= { index, state };
    passedOver.push(`${hostLabel(host)} (${describeState(state)})`);
  }
  if (attrs === "prefer-standby" && firstReachable !== undefined) return firstReachable;
  throw new ConnectionTargetError(
    `no server with target_session_attrs=${attrs} among ${passedOver.join(", ")}`,
  );
}

/** A probe failure in a few words: the SQLSTATE or errno code and the first line. */
function reason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const first = err.message.split("\n")[0] ?? "";
  return typeof code === "string" && !first.includes(code) ? `${code}: ${first}` : first;
}

/**
 * Parse one connection string (URL or keyword/value form) into a target. Throws
 * ConnectionTargetError with one line (no password) when it is malformed: an empty or bad host,
 * a port outside 1-65535, a port list that does not match the hosts, an unknown
 * target_session_attrs.
 */
export function parseConnectionTarget(text: string): ConnectionTarget {
  const raw = text.trim();
  const parts = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw)
    ? parseUrl(raw)
    : /^[A-Za-z_]+\s*=/.test(raw)
      ? parseKeywords(raw)
      : fail("expected a postgresql:// URL or keyword=value pairs");
  return buildTarget(parts);
}

/** The parts of a connection string, before hosts and ports are paired. */
interface Parts {
  scheme: string;
  /** As written (percent-encoded), without the '@'. */
  userinfo: string | null;
  /** Hosts of the authority part, each with its own port (URL form). */
  hosts: HostAddress[];
  /** `/db` as written, or "". */
  path: string;
  /** Query parameters other than host, port and target_session_attrs, as written. */
  params: string[];
  hostParam: string | null;
  portParam: string | null;
  attrs: string | null;
}

function fail(what: string): never {
  throw new ConnectionTargetError(what);
}

function parseUrl(raw: string): Parts {
  const schemeEnd = raw.indexOf("://");
  const scheme = raw.slice(0, schemeEnd).toLowerCase();
  if (scheme !== "postgres" && scheme !== "postgresql") fail("expected a postgres:// or postgresql:// URL");
  let rest = raw.slice(schemeEnd + 3);
  const hash = rest.indexOf("#");
  if (hash >= 0) rest = rest.slice(0, hash);
  // As libpq: the user info ends at an '@' before the first '/'.
  const at = rest.indexOf("@");
  const slash = rest.indexOf("/");
  let userinfo: string | null = null;
  if (at >= 0 && (slash < 0 || at < slash)) {
    userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
  }
  const authorityEnd = firstOf(rest, ["/", "?"]);
  const authority = rest.slice(0, authorityEnd);
  rest = rest.slice(authorityEnd);
  const queryStart = rest.indexOf("?");
  const path = queryStart < 0 ? rest : rest.slice(0, queryStart);
  const query = queryStart < 0 ? "" : rest.slice(queryStart + 1);
  if (path.length > 1 && path.slice(1).includes("/"))
    fail(`bad database name ${JSON.stringify(path.slice(1))}`);
  const parts: Parts = {
    scheme,
    userinfo,
    hosts: authority === "" ? [] : authority.split(",").map(parseHostPort),
    path,
    params: [],
    hostParam: null,
    portParam: null,
    attrs: null,
  };
  for (const param of query === "" ? [] : query.split("&")) {
    if (param === "") continue;
    const eq = param.indexOf("=");
    const key = decode(eq < 0 ? param : param.slice(0, eq));
    const value = eq < 0 ? "" : param.slice(eq + 1);
    if (key === "host") parts.hostParam = decode(value);
    else if (key === "port") parts.portParam = decode(value);
    else if (key === "target_session_attrs") parts.attrs = decode(value);
    else parts.params.push(param);
  }
  return parts;
}

function firstOf(s: string, chars: string[]): number {
  let end = s.length;
  for (const c of chars) {
    const i = s.indexOf(c);
    if (i >= 0 && i < end) end = i;
  }
  return end;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    fail(`bad percent-encoding in ${JSON.stringify(s)}`);
  }
}

/** One host of a URL's authority: `host`, `host:port`, `[v6]`, `[v6]:port`, `%2Fsocket/dir`. */
function parseHostPort(entry: string): HostAddress {
  let host: string;
  let port: string | null = null;
  if (entry.startsWith("[")) {
    const close = entry.indexOf("]");
    if (close < 0) fail(`bad host ${JSON.stringify(entry)}: no closing ']'`);
    host = entry.slice(1, close);
    const after = entry.slice(close + 1);
    if (after !== "") {
      if (!after.startsWith(":")) fail(`bad host ${JSON.stringify(entry)}`);
      port = after.slice(1);
    }
    if (!/^[0-9A-Fa-f:.]+(%[A-Za-z0-9]+)?$/.test(host)) fail(`bad IPv6 address ${JSON.stringify(entry)}`);
  } else {
    const colon = entry.indexOf(":");
    host = colon < 0 ? entry : entry.slice(0, colon);
    if (colon >= 0) port = entry.slice(colon + 1);
    host = decode(host);
  }
  return { host: checkHost(host, entry), port: port === null ? null : checkPort(port, entry) };
}

function checkHost(host: string, entry: string): string {
  if (host === "") fail(`empty host in ${JSON.stringify(entry)} (hosts are separated by single commas)`);
  if (host.startsWith("/")) return host;
  if (!/^[A-Za-z0-9._~:%-]+$/.test(host)) fail(`bad host ${JSON.stringify(entry)}`);
  return host;
}

function checkPort(port: string, where: string): number {
  const n = /^\d{1,5}$/.test(port) ? Number(port) : 0;
  if (n < 1 || n > 65535)
    fail(`bad port ${JSON.stringify(port)} in ${JSON.stringify(where)} (expected 1-65535)`);
  return n;
}

/** libpq's keyword/value form: `key=value` pairs; a value may be single-quoted (\' and \\). */
function parseKeywords(raw: string): Parts {
  const parts: Parts = {
    scheme: "postgresql",
    userinfo: null,
    hosts: [],
    path: "",
    params: [],
    hostParam: null,
    portParam: null,
    attrs: null,
  };
  let user: string | null = null;
  let password: string | null = null;
  const re = /\s*([A-Za-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s']*))/y;
  let i = 0;
  while (i < raw.length) {
    re.lastIndex = i;
    const m = re.exec(raw);
    if (m === null) {
      if (/^\s*$/.test(raw.slice(i))) break;
      fail(`bad keyword=value pair at ${JSON.stringify(raw.slice(i, i + 20).trim())}`);
    }
    i = re.lastIndex;
    const key = m[1] as string;
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : (m[3] as string);
    switch (key) {
      case "host":
        parts.hostParam = value;
        break;
      case "port":
        parts.portParam = value;
        break;
      case "target_session_attrs":
        parts.attrs = value;
        break;
      case "dbname":
        parts.path = `/${encodeURIComponent(value)}`;
        break;
      case "user":
        user = value;
        break;
      case "password":
        password = value;
        break;
      default:
        parts.params.push(`${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
    }
  }
  if (user !== null || password !== null) {
    parts.userinfo =
      encodeURIComponent(user ?? "") + (password === null ? "" : `:${encodeURIComponent(password)}`);
  }
  return parts;
}

/** Pair hosts and ports, check target_session_attrs, and write pg's string per host. */
function buildTarget(p: Parts): ConnectionTarget {
  let hosts = p.hosts;
  if (p.hostParam !== null) {
    if (hosts.length > 0) fail("hosts given both before the path and as ?host=: give them once");
    hosts = p.hostParam
      .split(",")
      .map((h) => ({ host: checkHost(h.trim(), p.hostParam as string), port: null }));
  }
  if (p.portParam !== null) {
    if (hosts.some((h) => h.port !== null))
      fail("ports given both with the hosts and as port=: give them once");
    const ports = p.portParam.split(",").map((s) => checkPort(s.trim(), p.portParam as string));
    const count = Math.max(hosts.length, 1);
    if (ports.length !== 1 && ports.length !== count) {
      fail(
        `${count} host${count === 1 ? "" : "s"} but ${ports.length} ports: give one port for all, or one per host`,
      );
    }
    if (hosts.length === 0) hosts = [{ host: null, port: null }];
    hosts = hosts.map((h, i) => ({ host: h.host, port: ports[ports.length === 1 ? 0 : i] as number }));
  }
  if (hosts.length === 0) hosts = [{ host: null, port: null }];
  const attrs = p.attrs ?? "any";
  if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(attrs)) {
    fail(
      `unknown target_session_attrs ${JSON.stringify(attrs)} (expected one of ${TARGET_SESSION_ATTRS.join(", ")})`,
    );
  }
  const targetSessionAttrs = attrs as TargetSessionAttrs;
  return {
    hosts,
    targetSessionAttrs,
    hostUrls: hosts.map((h) => hostUrl(p, h)),
    direct: hosts.length === 1 && targetSessionAttrs === "any",
  };
}

/** The single-host postgresql:// string pg is given for `h`. */
function hostUrl(p: Parts, h: HostAddress): string {
  const params = [...p.params];
  let authority = "";
  if (h.host?.startsWith("/")) {
    // A socket directory goes in ?host= (pg-connection-string reads it there).
    params.unshift(`host=${encodeURIComponent(h.host)}`);
    if (h.port !== null) params.push(`port=${h.port}`);
  } else if (h.host !== null) {
    authority = (h.host.includes(":") ? `[${h.host}]` : h.host) + (h.port === null ? "" : `:${h.port}`);
  } else if (h.port !== null) {
    params.push(`port=${h.port}`);
  }
  const userinfo = p.userinfo === null ? "" : `${p.userinfo}@`;
  const query = params.length === 0 ? "" : `?${params.join("&")}`;
  return `${p.scheme}://${userinfo}${authority}${p.path}${query}`;
}
