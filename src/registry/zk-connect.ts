/**
 * Connecting to ZooKeeper without ever hanging.
 *
 * node-zookeeper-client has two blind spots: (1) a client whose TCP connection is accepted by a
 * server that is still starting may wait for the session handshake for ever (the server never
 * answers and the library has no timeout for that phase; seen here in about 1 of 7 connects
 * made during server start), and (2) requests queued while disconnected wait for ever. So every
 * connect here is bounded and retried with a fresh client, every client carries a handshake
 * watchdog that drops a stalled handshake socket (the library then reconnects and resumes the
 * session), and every operation in zk-ops.ts has a timeout.
 */
import type { Socket } from "node:net";
import zookeeper, { type Client } from "node-zookeeper-client";
import { ErrorCode, KiteqError } from "../errors.js";
import { type Logger, silentLogger } from "../log.js";

/** Options of {@link connectZooKeeper}. */
export interface ZkConnectOptions {
  /** Session timeout asked of the server (it clamps it to its min/max session timeout). */
  sessionTimeoutMs: number;
  /** How long one attempt may take to establish a session before its client is abandoned. */
  connectTimeoutMs: number;
  /** Further attempts after the first one, each with a new client. */
  retries: number;
  logger?: Logger;
  /** Abort: the attempt in progress is abandoned and the call rejects with RegistryFailed. */
  signal?: AbortSignal;
}

/** ZooKeeper servers parsed from `zk://h:p,h:p[/chroot]` or `h:p,h:p[/chroot]`. */
export interface ZkUrl {
  /** What node-zookeeper-client takes: `h:p,h:p` plus the chroot if any. */
  connectString: string;
  /** `host:port` of each server (port defaults to 2181). */
  servers: string[];
  /** Chroot path (e.g. `/prod`), if one was given. */
  chroot: string | undefined;
}

const DEFAULT_ZK_PORT = 2181;
/** ConnectionManager.STATES.CONNECTING / CLOSED in node-zookeeper-client. */
const CM_CONNECTING = 1;
const CM_CLOSED = -2;
/** Exception.CONNECTION_LOSS. */
const CONNECTION_LOSS = -4;

/**
 * Longest session timeout a registry URL may ask for: ZooKeeper holds a session to its
 * maxSessionTimeout (40 s by default) whatever is asked, and beyond 2^31 ms the client crashed
 * with a RangeError.
 */
export const MAX_ZK_SESSION_MS = 3_600_000;

/** What a registry URL's `timeout=` takes (the README's words). */
export const ZK_TIMEOUT_FORMAT = `<n>ms, <n>s or <n>m, from 1ms to ${MAX_ZK_SESSION_MS / 60_000}m`;

/**
 * The query of a registry URL (`zk://h:p?timeout=4s`; `sessionTimeout=` is the same): its session
 * timeout, or why it is refused. The one parser of the broker's --registry and the SDK's
 * `registry`, so both take and refuse the same URLs.
 */
export function parseZkQuery(query: string): { sessionTimeoutMs: number | undefined } | { error: string } {
  let sessionTimeoutMs: number | undefined;
  for (const param of query === "" ? [] : query.split("&")) {
    const eq = param.indexOf("=");
    const name = eq === -1 ? param : param.slice(0, eq);
    if (name !== "timeout" && name !== "sessionTimeout") {
      return { error: `unknown parameter "${param}" (known: timeout=${ZK_TIMEOUT_FORMAT})` };
    }
    const value = eq === -1 ? "" : param.slice(eq + 1);
    const m = /^(\d+)(ms|s|m)$/.exec(value);
    const ms = m === null ? Number.NaN : Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "s" ? 1000 : 60_000);
    if (!(ms >= 1 && ms <= MAX_ZK_SESSION_MS)) {
      return { error: `${name} ${JSON.stringify(value)} is not ${ZK_TIMEOUT_FORMAT}` };
    }
    sessionTimeoutMs = ms;
  }
  return { sessionTimeoutMs };
}

/** Parse a ZooKeeper address list; throws KiteqError(ConfigInvalid) on anything malformed. */
export function parseZkUrl(url: string): ZkUrl {
  const trimmed = url.trim();
  const body = trimmed.startsWith("zk://") ? trimmed.slice("zk://".length) : trimmed;
  const slash = body.indexOf("/");
  const hostList = slash === -1 ? body : body.slice(0, slash);
  const chrootRaw = slash === -1 ? "" : body.slice(slash).replace(/\/+$/, "");
  const invalid = (why: string) =>
    new KiteqError(ErrorCode.ConfigInvalid, `invalid ZooKeeper address "${url}": ${why}`, {
      key: "registry",
    });
  if (hostList === "") throw invalid("no host");
  const servers = hostList.split(",").map((entry) => {
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$/.exec(entry.trim());
    if (m === null) throw invalid(`"${entry}" is not host[:port]`);
    const port = m[2] === undefined ? DEFAULT_ZK_PORT : Number(m[2]);
    if (port < 1 || port > 65535) throw invalid(`port ${port} out of range`);
    return `${m[1]}:${port}`;
  });
  if (chrootRaw !== "" && !/^(\/[^/\s]+)+$/.test(chrootRaw)) throw invalid(`bad chroot "${chrootRaw}"`);
  const chroot = chrootRaw === "" ? undefined : chrootRaw;
  return { connectString: servers.join(",") + (chroot ?? ""), servers, chroot };
}

/**
 * Open a ZooKeeper session. Each attempt uses a new client and gives up on it after
 * `connectTimeoutMs` (closing it); after `retries + 1` attempts it throws
 * KiteqError(RegistryFailed, "ZooKeeper at X unreachable after N s"). The returned client keeps a
 * handshake watchdog until {@link closeZooKeeper}.
 */
export async function connectZooKeeper(connectString: string, options: ZkConnectOptions): Promise<Client> {
  const logger = options.logger ?? silentLogger;
  const started = Date.now();
  const attempts = Math.max(1, options.retries + 1);
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const client = zookeeper.createClient(connectString, {
      sessionTimeout: options.sessionTimeoutMs,
      spinDelay: 250,
      retries: 0,
    });
    installHandshakeWatchdog(client, Math.min(2_000, Math.max(500, options.connectTimeoutMs / 2)), logger);
    try {
      await waitConnected(client, options.connectTimeoutMs, options.signal);
      logger.debug(
        { attempt, sessionTimeoutMs: client.getSessionTimeout() },
        "ZooKeeper session established",
      );
      return client;
    } catch (err) {
      lastError = err;
      abandonClient(client);
      logger.debug({ attempt, err: String(err) }, "ZooKeeper connect attempt failed");
      // Said once: a start waiting for ZooKeeper was silent until it gave up (15 s).
      if (attempt === 1 && attempts > 1 && !options.signal?.aborted) {
        logger.warn(
          { zk: connectString, attempts, err: String(err) },
          "ZooKeeper not reachable yet: retrying",
        );
      }
      if (options.signal?.aborted) break;
      if (attempt < attempts) await sleep(Math.min(200 * 2 ** (attempt - 1), 2_000));
    }
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (options.signal?.aborted) {
    throw new KiteqError(ErrorCode.RegistryFailed, `ZooKeeper connect to ${connectString} aborted`, {
      zk: connectString,
    });
  }
  throw new KiteqError(
    ErrorCode.RegistryFailed,
    `ZooKeeper at ${connectString} unreachable after ${seconds} s`,
    { zk: connectString, attempts },
    { cause: lastError },
  );
}

/**
 * Close a client and release its socket. A connected client sends closeSession (its ephemeral
 * nodes vanish at once) and gets up to `graceMs` for the server to answer; any other client is
 * torn down immediately. Idempotent.
 */
export async function closeZooKeeper(client: Client, graceMs = 2_000): Promise<void> {
  if (closed.has(client)) return;
  const connected = client.getState() === zookeeper.State.SYNC_CONNECTED;
  if (!connected) {
    abandonClient(client);
    return;
  }
  closed.add(client);
  stopWatchdog(client);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, graceMs);
    function done(): void {
      clearTimeout(timer);
      client.removeListener("disconnected", done);
      resolve();
    }
    client.once("disconnected", done);
    try {
      client.close();
    } catch {
      done();
    }
  });
  neutralize(client);
}

/**
 * Drop a client that has no usable session (stuck handshake, expired, unreachable server)
 * without waiting and without sending anything. Idempotent.
 */
export function abandonClient(client: Client): void {
  if (closed.has(client)) return;
  closed.add(client);
  stopWatchdog(client);
  neutralize(client);
}

/**
 * Make a client inert: no reconnect, no state events, every queued or new request fails with
 * CONNECTION_LOSS, its socket destroyed. The library's own close() is not safe on a client
 * that is not connected: a reconnect already scheduled (spin delay) opens a socket after it,
 * and the server's connect response is then parsed as the answer to the queued closeSession,
 * which throws from a socket handler and takes the process down ("Unknown code: ...").
 */
function neutralize(client: Client): void {
  const manager = client.connectionManager;
  manager.state = CM_CLOSED;
  manager.setState = () => undefined;
  manager.connect = () => undefined;
  manager.onSocketConnected = function (this: typeof manager) {
    this.socket?.destroy();
  };
  manager.onSocketData = () => undefined;
  manager.cleanupPendingQueue(CONNECTION_LOSS);
  for (let packet = manager.packetQueue.shift(); packet !== undefined; packet = manager.packetQueue.shift()) {
    packet.callback?.(zookeeper.Exception.create(CONNECTION_LOSS));
  }
  const socket = manager.socket;
  if (socket !== undefined && !socket.destroyed) socket.destroy();
}

const closed = new WeakSet<Client>();
const watchdogs = new WeakMap<Client, NodeJS.Timeout>();

function waitConnected(client: Client, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new Error("aborted"));
      return;
    }
    const timer = setTimeout(() => finish(new Error(`no session within ${timeoutMs} ms`)), timeoutMs);
    const onConnected = () => finish();
    const onAuthFailed = () => finish(new Error("authentication failed"));
    const onAbort = () => finish(new Error("aborted"));
    function finish(err?: Error): void {
      clearTimeout(timer);
      client.removeListener("connected", onConnected);
      client.removeListener("authenticationFailed", onAuthFailed);
      signal?.removeEventListener("abort", onAbort);
      if (err === undefined) resolve();
      else reject(err);
    }
    client.once("connected", onConnected);
    client.once("authenticationFailed", onAuthFailed);
    signal?.addEventListener("abort", onAbort, { once: true });
    client.connect();
  });
}

/**
 * Drop a socket that is TCP-connected but whose session handshake got no answer within
 * `stallMs`: the library sees a lost connection and reconnects (resuming the session, so
 * ephemeral nodes and watches survive). Covers the library's own reconnects after an outage.
 */
function installHandshakeWatchdog(client: Client, stallMs: number, logger: Logger): void {
  let tracked: Socket | undefined;
  let since = 0;
  const timer = setInterval(
    () => {
      const manager = client.connectionManager;
      const socket = manager.socket;
      if (manager.state !== CM_CONNECTING || socket === undefined || socket.destroyed || socket.connecting) {
        tracked = undefined;
        return;
      }
      if (socket !== tracked) {
        tracked = socket;
        since = Date.now();
        return;
      }
      if (Date.now() - since >= stallMs) {
        logger.debug({ stallMs }, "ZooKeeper handshake unanswered; reconnecting");
        tracked = undefined;
        socket.destroy();
      }
    },
    Math.max(50, Math.floor(stallMs / 4)),
  );
  timer.unref();
  watchdogs.set(client, timer);
}

/** What {@link onLostSession} needs to probe the servers with a session of its own. */
export interface LostSessionProbe {
  /** The servers `client` was opened on (connectZooKeeper's connect string). */
  connectString: string;
  /** How often to probe while `client` is cut off (default 2 s). */
  everyMs?: number;
}

/**
 * Call `onLost(why)` when `client` has most likely lost its session while the library cannot tell:
 * a server that lost its data (a restart without its data directory, a new ensemble) refuses a
 * client that has seen a later zxid, and the library retries that for ever, never reporting the
 * session expired. Two signs, whichever comes first:
 * - with `probe`: while `client` is cut off, a fresh session is tried about every `everyMs`; two in a row
 *   that open while `client` still cannot reconnect (the library retries every 250 ms) mean the
 *   servers serve, but not this session (a few seconds instead of a session timeout: nodes were
 *   unfindable for 30 s after such a restart);
 * - cut off for a whole session timeout (its negotiated one, else `timeoutMs`): the server has
 *   expired the session by then.
 * The caller then gives the client up and opens a new session. Returns a function that stops
 * watching (and any probe in progress).
 */
export function onLostSession(
  client: Client,
  timeoutMs: number,
  onLost: (why: string) => void,
  probe?: LostSessionProbe,
): () => void {
  let timer: NodeJS.Timeout | undefined;
  let probeTimer: NodeJS.Timeout | undefined;
  let probing: AbortController | undefined;
  let servedProbes = 0;
  let stopped = false;
  const connected = () => client.getState() === zookeeper.State.SYNC_CONNECTED;
  const clear = () => {
    if (timer !== undefined) clearTimeout(timer);
    if (probeTimer !== undefined) clearTimeout(probeTimer);
    timer = undefined;
    probeTimer = undefined;
    probing?.abort();
    probing = undefined;
    servedProbes = 0;
  };
  const lost = (why: string) => {
    if (stopped) return;
    clear();
    onLost(why);
  };
  const probeOnce = async (connectString: string, everyMs: number) => {
    if (probing !== undefined || connected()) return;
    const abort = new AbortController();
    probing = abort;
    let served = false;
    try {
      const other = await connectZooKeeper(connectString, {
        sessionTimeoutMs: Math.max(1_000, everyMs * 2),
        connectTimeoutMs: Math.max(500, everyMs - 100),
        retries: 0,
        signal: abort.signal,
      });
      served = true;
      void closeZooKeeper(other, 500);
    } catch {
      // The servers give no session either: an outage, waited out (or the session timeout).
    }
    if (probing !== abort) return; // stopped or reconnected meanwhile
    probing = undefined;
    servedProbes = served ? servedProbes + 1 : 0;
    if (servedProbes >= 2 && !connected()) {
      lost(
        `ZooKeeper serves new sessions but refuses this one (${servedProbes} probes about ${everyMs} ms apart)`,
      );
    }
  };
  const arm = () => {
    clear();
    const ms = client.getSessionTimeout() > 0 ? client.getSessionTimeout() : timeoutMs;
    timer = setTimeout(() => {
      timer = undefined;
      if (!connected()) lost(`no ZooKeeper connection for a whole session timeout (${ms} ms)`);
    }, ms);
    timer.unref();
    if (probe !== undefined) {
      const everyMs = probe.everyMs ?? 2_000;
      // Jittered (0.75-1.25 x everyMs): the many clients of one process, cut off together, do
      // not all probe the servers in the same instant when they come back.
      const next = () => {
        probeTimer = setTimeout(
          () => {
            void probeOnce(probe.connectString, everyMs);
            next();
          },
          everyMs * (0.75 + Math.random() / 2),
        );
        probeTimer.unref();
      };
      next();
    }
  };
  client.on("disconnected", arm);
  client.on("connected", clear);
  return () => {
    stopped = true;
    clear();
    client.removeListener("disconnected", arm);
    client.removeListener("connected", clear);
  };
}

function stopWatchdog(client: Client): void {
  const timer = watchdogs.get(client);
  if (timer !== undefined) clearInterval(timer);
  watchdogs.delete(client);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
