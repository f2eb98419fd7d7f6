/**
 * The admin HTTP server (node:http): GET /healthz, GET /metrics (Prometheus text format) and
 * GET /messages/:id (a message's history as JSON). Read-only; bind it to a private address.
 *
 * With a token, every path but /healthz needs `Authorization: Bearer <token>` (401 otherwise).
 * /healthz stays open for load balancers and orchestrator probes, which rarely can send a header:
 * without the token it says only ok / unavailable (no error text, no message data).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type pg from "pg";
import type { Registry } from "prom-client";
import { DeadlineExceeded, withDeadline } from "../deadline.js";
import { ErrorCode, sqlState, toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { RateLimitedLog } from "../log-limit.js";
import { listenFailure } from "../server/listen-failure.js";
import { pingStore } from "../store/db.js";
import { shardedMessageHistory } from "../store/sharded-history.js";
import { type ApiContext, ApiError, type ApiSource, handleApi, isApiPath } from "./api.js";
import { isConsolePath, serveConsole } from "./console.js";
import { createMetrics, type MetricsSource } from "./metrics.js";
import { Sampler } from "./sampler.js";

/** Options of startAdminServer. */
export interface AdminServerOptions {
  /** Listen address (config.admin); port 0 picks a free one. */
  host: string;
  port: number;
  /** The node's pool: health check, history lookups, pool gauges, owed deliveries. */
  pool: pg.Pool;
  /**
   * Every shard's pool, shard 0 (= pool) first, when the store is sharded: history and explain
   * read a message from its shard and a group's history from all of them.
   */
  shardPools?: readonly pg.Pool[];
  /**
   * Pools for what requests read (the API, /messages, /healthz), one per shard like shardPools
   * (default: shardPools). The broker gives small pools of their own that drop a statement's
   * connection when it does not answer in time: while PostgreSQL hangs, requests then neither
   * take the connections the node's own statements need nor keep any after their 503.
   */
  requestPools?: readonly pg.Pool[];
  /** Bearer token required on everything but /healthz; undefined or null = no authentication. */
  token?: string | null;
  /** The node's counters. */
  metrics: MetricsSource;
  log: Logger;
  /** The store this node serves (config/store-identity.ts), said by /healthz for the CLI. */
  storeId?: string;
  /** /healthz answers 503 when SELECT 1 takes longer than this; default 2000 ms. */
  healthTimeoutMs?: number;
  /** Other requests (a re-drive excepted) answer 503 when the store takes longer; default 15,000 ms. */
  requestTimeoutMs?: number;
  /**
   * Why this node cannot store publishes now (a batch waiting on PostgreSQL, the last batches
   * failing), or undefined: /healthz answers 503 with it, though `SELECT 1` may still answer.
   */
  storeProblem?: () => string | undefined;
  /**
   * The shards this node takes for down now (several shards only): a request that fails on the
   * store while some are down answers 503 naming them, rather than a bare "connect ECONNREFUSED"
   * (a 500 from /api/groups and /api/overview) that said neither which shard nor that the others
   * answer.
   */
  shardsDown?: () => readonly { shard: number; label: string; reason: string }[];
  /** Cache of the owed-deliveries query (ms); default 5000. */
  owedCacheMs?: number;
  /** Node.js process metrics in /metrics; default true. */
  processMetrics?: boolean;
  /** The node behind the JSON API (/api/...); without it the API answers for an anonymous node. */
  api?: ApiSource;
  /** Minimum time between two backlog samples (ms); default 5000. */
  sampleIntervalMs?: number;
  /** Minimum time between two dead-letter counts (ms); default 60,000. */
  deadLetterIntervalMs?: number;
}

/** A running admin server. */
export interface AdminServer {
  /** The address it listens on (the port chosen when 0 was asked). */
  readonly address: { host: string; port: number };
  /** Stop listening and close every connection. */
  close(): Promise<void>;
}

const MESSAGE_PATH = /^\/messages\/([^/]+)$/;
const MESSAGE_ID = /^[0-9a-fA-F]{32}$/;

/** Start the admin server; resolves once it listens. */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const log = options.log;
  const sampler = new Sampler({
    pool: options.pool,
    pools: options.shardPools,
    log,
    intervalMs: options.sampleIntervalMs,
    deadLetterIntervalMs: options.deadLetterIntervalMs,
    ...(options.shardsDown === undefined ? {} : { shardsDown: options.shardsDown }),
    source: {
      published: () => options.metrics.publishCounters().accepted,
      pushed: () => options.metrics.deliveryCounters().pushed,
      groupCounters: () => options.metrics.groupCounters?.() ?? new Map(),
    },
  });
  sampler.start();
  const registry = createMetrics({
    source: options.metrics,
    pool: options.pool,
    pools: options.shardPools,
    log,
    owedCacheMs: options.owedCacheMs,
    processMetrics: options.processMetrics,
    sampler,
  });
  const authorized = bearerCheck(options.token ?? null);
  // A store that is away fails every request: one line per kind of failure, not one per request.
  const limitedLog = new RateLimitedLog(log);
  const requestPools = requestPoolsOf(options);
  const api: ApiContext = {
    pool: requestPools[0]!,
    pools: requestPools,
    sampler,
    source: options.api ?? {
      nodeId: "?",
      version: "?",
      startedAt: new Date(),
      consumers: () => new Map(),
      topics: [],
    },
  };
  const server = http.createServer((req, res) => {
    route(req, res, options, registry, authorized, api).catch((err: unknown) => {
      if (err instanceof ApiError) {
        if (!res.headersSent) sendJson(res, err.status, { error: err.message, code: err.code }, err.headers);
        return;
      }
      const e = toKiteqError(err);
      const down = options.shardsDown?.() ?? [];
      if (down.length > 0 && (storeUnavailable(err) || e.code === ErrorCode.StoreFailed)) {
        const names = down.map((d) => `shard ${d.shard} (${d.label}) is down: ${d.reason}`).join("; ");
        limitedLog.error(
          "admin request failed shard down",
          {
            code: ErrorCode.StoreFailed,
            err: e.message,
            path: req.url,
            shardsDown: down.map((d) => d.shard).join(","),
          },
          "admin request failed: a shard it needs is down",
        );
        if (!res.headersSent) {
          sendJson(res, 503, {
            error: `${names}: this answer needs it, the other shards answer (${e.message})`,
            code: ErrorCode.StoreFailed,
            shardsDown: down.map((d) => d.shard),
          });
        } else res.destroy();
        return;
      }
      // PostgreSQL away or hung: 503 naming it (it was a 500 KQ_INTERNAL, or no answer at all).
      const unavailable = storeUnavailable(err);
      limitedLog.error(
        "admin request failed",
        { code: unavailable ? ErrorCode.StoreFailed : e.code, err: e.message, path: req.url },
        "admin request failed",
      );
      if (!res.headersSent) {
        sendJson(
          res,
          unavailable ? 503 : 500,
          unavailable
            ? { error: `the store is not answering: ${e.message}`, code: ErrorCode.StoreFailed }
            : { error: e.message, code: e.code },
        );
      } else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(listenFailure(err, "--admin", `${options.host}:${options.port}`));
    server.once("error", onError);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => log.error({ err: err.message }, "admin server error"));
  const addr = server.address() as AddressInfo;
  log.info({ address: `${addr.address}:${addr.port}` }, "admin server listening");
  let closing: Promise<void> | undefined;
  return {
    address: { host: addr.address, port: addr.port },
    close() {
      sampler.stop();
      closing ??= (async () => {
        // A running re-drive stops after its batch in hand and answers with what it did, before
        // the connections close (it was cut off with no answer).
        api.stopping = true;
        await withDeadline(api.redriveRun ?? Promise.resolve(), REDRIVE_STOP_WAIT_MS).catch(() => undefined);
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          // What is still open after a moment (a slow request) is cut.
          setTimeout(() => server.closeAllConnections(), 200).unref();
        });
      })();
      return closing;
    },
  };
}

async function route(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  options: AdminServerOptions,
  registry: Registry,
  authorized: (header: string | undefined) => boolean,
  api: ApiContext,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://admin");
  const path = url.pathname;
  const allowed = authorized(req.headers.authorization);
  if (path === "/healthz" && (req.method === "GET" || req.method === "HEAD")) {
    return health(res, options, allowed);
  }
  // The console's static files hold no data: the page asks for the token itself.
  if (isConsolePath(path) && (req.method === "GET" || req.method === "HEAD")) {
    return serveConsole(path, req, res);
  }
  // Before routing: without the token, nothing says which paths exist.
  if (!allowed) {
    res.setHeader("WWW-Authenticate", 'Bearer realm="kiteq-pg admin"');
    return sendJson(res, 401, {
      error: "missing or wrong admin token: send Authorization: Bearer <token>",
      code: ErrorCode.AuthRefused,
    });
  }
  if (isApiPath(path)) {
    const work = handleApi(req, url, api);
    // A re-drive runs as long as max / ratePerSecond says (at most 600 s); every other request
    // answers within the deadline, also while PostgreSQL does not answer at all.
    const long = req.method === "POST" && path.endsWith("/redrive");
    const deadline = options.requestTimeoutMs ?? ADMIN_REQUEST_DEADLINE_MS;
    const { status, body, headers } = long
      ? await work
      : await withDeadline(work, deadline, storeTimedOut(deadline));
    return sendJson(res, status, body, headers);
  }
  const known = path === "/healthz" || path === "/metrics" || MESSAGE_PATH.test(path);
  if (!known) return sendJson(res, 404, { error: `no such resource: ${path}`, code: ErrorCode.NotFound });
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("Allow", "GET, HEAD");
    return sendJson(res, 405, { error: `method ${req.method} not allowed`, code: ErrorCode.RequestRefused });
  }
  if (path === "/healthz") return health(res, options, true);
  if (path === "/metrics") {
    const text = await registry.metrics();
    res.writeHead(200, { "Content-Type": registry.contentType });
    res.end(req.method === "HEAD" ? undefined : text);
    return;
  }
  const id = decodeSegment(MESSAGE_PATH.exec(path)?.[1] ?? "");
  if (!MESSAGE_ID.test(id)) {
    return sendJson(res, 400, {
      error: `invalid message id "${id.slice(0, 64)}": 32 hexadecimal characters expected`,
      code: ErrorCode.RequestInvalid,
    });
  }
  const deadline = options.requestTimeoutMs ?? ADMIN_REQUEST_DEADLINE_MS;
  const history = await withDeadline(
    shardedMessageHistory(requestPoolsOf(options), id.toLowerCase()),
    deadline,
    storeTimedOut(deadline),
  );
  if (history === null) {
    return sendJson(res, 404, {
      error: `no message ${id.toLowerCase()} in the history`,
      code: ErrorCode.NotFound,
    });
  }
  sendJson(res, 200, history);
}

/**
 * The Authorization header check: true for every request when there is no token, else only for
 * `Bearer <token>`. Both sides are hashed first, so the comparison is constant-time whatever
 * the lengths.
 */
export function bearerCheck(token: string | null): (header: string | undefined) => boolean {
  if (token === null) return () => true;
  const expected = createHash("sha256").update(token, "utf8").digest();
  return (header) => {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? "");
    const given = createHash("sha256")
      .update(m?.[1] ?? "", "utf8")
      .digest();
    return timingSafeEqual(given, expected) && m !== null;
  };
}

/**
 * GET /healthz. One store: 200 while `SELECT 1` answers within the timeout and publishes are being
 * stored, else 503 naming why. Several shards: every shard is pinged at once; 200 while at least
 * one answers ("degraded", naming the shards that do not, when some do not), 503 only when none
 * does. Every node serves every shard, so a shard down is the same on every node: a 503 would take
 * them all out of their load balancer (or get them all restarted by a liveness probe) and cut off
 * the shards that work, while the producers of the shard that is down get a refusal naming it.
 * `kiteq_shard_up` is what alerts on a shard.
 */
/**
 * What /healthz last answered, per server: a change is logged once (a node with no publishes
 * answered 503 for a whole PostgreSQL outage and its log said nothing).
 */
const lastHealth = new WeakMap<AdminServerOptions, string>();

function noteHealth(options: AdminServerOptions, status: string, error?: string): void {
  const before = lastHealth.get(options) ?? "ok";
  lastHealth.set(options, status);
  if (before === status) return;
  if (status === "unavailable") {
    options.log.warn(
      { code: ErrorCode.StoreFailed, err: error },
      "/healthz answers 503: the store is not answering",
    );
  } else if (status === "degraded") {
    options.log.warn(
      { code: ErrorCode.StoreFailed, err: error },
      "/healthz answers degraded: some shards are not answering",
    );
  } else {
    options.log.info({ was: before }, "/healthz answers ok again");
  }
}

async function health(
  res: http.ServerResponse,
  options: AdminServerOptions,
  detailed: boolean,
): Promise<void> {
  const timeoutMs = options.healthTimeoutMs ?? 2000;
  const pools = requestPoolsOf(options);
  const failures = await Promise.all(pools.map((pool) => pingWithin(pool, timeoutMs)));
  const down = failures.flatMap((error, shard) => (error === undefined ? [] : [{ shard, error }]));
  const problem = down.length < pools.length ? options.storeProblem?.() : undefined;
  if (down.length === pools.length || problem !== undefined) {
    const error =
      problem ??
      (pools.length === 1 ? down[0]!.error : down.map((d) => `shard ${d.shard}: ${d.error}`).join("; "));
    noteHealth(options, "unavailable", error);
    sendJson(res, 503, detailed ? { status: "unavailable", error } : { status: "unavailable" });
    return;
  }
  const status = down.length === 0 ? "ok" : "degraded";
  noteHealth(options, status, down.map((d) => `shard ${d.shard}: ${d.error}`).join("; ") || undefined);
  // The store's digest and the shards down only with the token (or none configured).
  sendJson(
    res,
    200,
    !detailed
      ? { status }
      : {
          status,
          ...(options.storeId === undefined ? {} : { store: options.storeId }),
          ...(down.length === 0 ? {} : { shardsDown: down }),
        },
  );
}

/** The pools requests read from, shard 0 first. */
function requestPoolsOf(options: AdminServerOptions): readonly pg.Pool[] {
  const pools = options.requestPools ?? options.shardPools ?? [options.pool];
  return pools.length > 0 ? pools : [options.pool];
}

/** undefined when `SELECT 1` answers on `pool` within `timeoutMs`, else why not. */
async function pingWithin(pool: pg.Pool, timeoutMs: number): Promise<string | undefined> {
  try {
    await withDeadline(
      pingStore(pool, timeoutMs),
      timeoutMs,
      () => new Error(`store did not answer within ${timeoutMs} ms`),
    );
    return undefined;
  } catch (err) {
    return toKiteqError(err).message;
  }
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
    "Cache-Control": "no-store",
  });
  res.end(text);
}

/** How long close() waits for a running re-drive's answer. */
const REDRIVE_STOP_WAIT_MS = 5_000;

/** How long an admin request (but a re-drive) may wait for the store before it answers 503. */
export const ADMIN_REQUEST_DEADLINE_MS = 15_000;

function storeTimedOut(ms: number): () => Error {
  return () => new DeadlineExceeded(`no answer from PostgreSQL within ${ms} ms (slow, hung, or unreachable)`);
}

/** Whether a request failed because PostgreSQL is away or hung (503) rather than a bug (500). */
function storeUnavailable(err: unknown): boolean {
  if (err instanceof DeadlineExceeded) return true;
  const state = sqlState(err);
  if (state !== undefined) {
    // connection exceptions, insufficient resources, shutdown, statement_timeout
    return state.startsWith("08") || state.startsWith("53") || /^57(P0[123]|014)$/.test(state);
  }
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code ?? "";
  return (
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EPIPE)$/.test(code) ||
    /Connection terminated|connection timeout|timeout exceeded when trying to connect/i.test(err.message)
  );
}
