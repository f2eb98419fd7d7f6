/**
 * The admin JSON API (/api/...), served by the admin server behind its token. Reads come from
 * the Sampler (backlog and rates, refreshed at most every few seconds) and from index-path store
 * statements; the one write is the re-drive of dead letters, paced by a rate limit and recorded
 * as `redriven` rows saying who asked and why. Routes and shapes are documented in the README.
 */

import type http from "node:http";
import type pg from "pg";
import type { Binding } from "../binding/binding.js";
import { bindingRecord } from "../binding/binding.js";
import { parseTime } from "../cli/args.js";
import { ErrorCode } from "../errors.js";
import { MAX_NAME_BYTES } from "../publish/limits.js";
import { listBindings } from "../store/bindings.js";
import { redriveDeliveries } from "../store/deliveries.js";
import {
  countDeadLetters,
  type DeadLetterCursor,
  type DeadLetterFilter,
  type DeadLetterRow,
  deadLetterPage,
  listNodes,
  type NodeRow,
  PENDING_COUNT_CAP,
} from "../store/groups.js";
import type { GroupHistoryPlace } from "../store/history.js";
import {
  messagesByShard,
  type ShardedDeadLetterCursor,
  shardedDeadLetterPage,
  shardedExplain,
  shardedGroupHistoryRows,
} from "../store/sharded-history.js";
import { type ClusterView, clusterView } from "./cluster.js";
import { groupRow, sortGroupRows } from "./group-rows.js";
import { livenessOf, type Sample, type Sampler } from "./sampler.js";

/** What the API knows about the node serving it. */
export interface ApiSource {
  nodeId: string;
  version: string;
  startedAt: Date;
  /** Consumer connections of this node per group (other nodes' sessions are not visible here). */
  consumers(): ReadonlyMap<string, number>;
  /** Topics this node was configured with (empty: any topic). */
  topics: readonly string[];
}

/** Everything a request handler needs. */
export interface ApiContext {
  /** Shard 0: bindings, nodes. */
  pool: pg.Pool;
  /** Every shard's pool, shard 0 first (one database: [pool]). */
  pools: readonly pg.Pool[];
  sampler: Sampler;
  source: ApiSource;
  /** The server is closing: a running re-drive stops after the batch in hand and answers. */
  stopping?: boolean;
  /**
   * The running re-drive until it answered (one at a time per server; the server's close waits
   * for it, briefly).
   */
  redriveRun?: Promise<unknown>;
}

/** An error answered as `{ error }` with its status. */
export class ApiError extends Error {
  /** The stable code of the answer (by status unless given). */
  readonly code: ErrorCode;
  constructor(
    readonly status: number,
    message: string,
    code?: ErrorCode,
    /** Headers of the answer (a 405's Allow). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.code = code ?? codeOfStatus(status);
  }
}

/** What an API request answers. */
export interface ApiAnswer {
  status: number;
  body: unknown;
  /** Headers beside the JSON's own (a history page's Link to the next). */
  headers?: Readonly<Record<string, string>>;
}

/** A 405 naming the methods the resource takes (RFC 9110: with an Allow header). */
function notAllowed(method: string, allow: string): ApiError {
  return new ApiError(405, `method ${method} not allowed (${allow})`, undefined, { Allow: allow });
}

/** The stable code of an admin answer with HTTP `status` (4xx; 5xx come from the failure). */
export function codeOfStatus(status: number): ErrorCode {
  if (status === 401) return ErrorCode.AuthRefused;
  if (status === 404) return ErrorCode.NotFound;
  if (status === 409) return ErrorCode.Busy;
  if (status === 405 || status === 413) return ErrorCode.RequestRefused;
  if (status === 503) return ErrorCode.StoreFailed;
  return ErrorCode.RequestInvalid;
}

/** Longest group, topic or message type the API takes: a name's bytes limit at most (UTF-16 units <= bytes). */
const MAX_NAME_CHARS = MAX_NAME_BYTES;

const GROUP_PATH = /^\/api\/groups\/([^/]+)(\/dead-letters|\/redrive|\/history)?$/;
const EXPLAIN_PATH = /^\/api\/messages\/([^/]+)\/explain$/;
const MAX_BODY = 64 * 1024;

/** Whether `path` is an API route (any method). */
export function isApiPath(path: string): boolean {
  return (
    path === "/api/overview" ||
    path === "/api/groups" ||
    path === "/api/bindings" ||
    GROUP_PATH.test(path) ||
    EXPLAIN_PATH.test(path)
  );
}

/** Handle one API request; resolves with the status and JSON body to send. */
export async function handleApi(req: http.IncomingMessage, url: URL, ctx: ApiContext): Promise<ApiAnswer> {
  const path = url.pathname;
  const method = req.method ?? "GET";
  const get = method === "GET" || method === "HEAD";
  if (path === "/api/overview") return ok(method, () => overview(ctx));
  if (path === "/api/groups") return ok(method, () => groups(ctx));
  if (path === "/api/bindings")
    return ok(method, async () => (await listBindings(ctx.pool)).map(bindingRecord));
  const explain = EXPLAIN_PATH.exec(path);
  if (explain !== null) {
    return ok(method, async () => {
      const id = decode(explain[1] ?? "");
      if (!/^[0-9a-fA-F]{32}$/.test(id)) {
        throw new ApiError(
          400,
          `invalid message id "${id.slice(0, 64)}": 32 hexadecimal characters expected`,
        );
      }
      const e = await shardedExplain(ctx.pools, id);
      if (e === null) throw new ApiError(404, `no message ${id.toLowerCase()} in the history`);
      return e;
    });
  }
  const g = GROUP_PATH.exec(path);
  if (g === null) throw new ApiError(404, `no such resource: ${path}`);
  const groupId = decode(g[1] ?? "");
  // As long as a binding may name it (--max-name-bytes); no NUL (PostgreSQL refuses it in text).
  if (groupId === "" || groupId.length > MAX_NAME_CHARS || groupId.includes("\0")) {
    throw new ApiError(400, "invalid group id");
  }
  if (g[2] === "/redrive") {
    if (method !== "POST") throw notAllowed(method, "POST");
    // The JSON body or the query string (the body wins), `by` included.
    const input = { ...queryObject(url), ...(await readJson(req)) };
    await knownGroup(ctx, groupId);
    return { status: 200, body: await redrive(ctx, groupId, input, who(req, input)) };
  }
  if (g[2] === "/history") {
    if (!get) throw notAllowed(method, "GET, HEAD");
    // Any group id: a group no longer bound still has its history.
    return history(groupId, url, ctx);
  }
  if (g[2] === "/dead-letters") {
    return ok(method, async () => {
      await knownGroup(ctx, groupId);
      return deadLetters(ctx, groupId, queryObject(url));
    });
  }
  return ok(method, async () => {
    await knownGroup(ctx, groupId);
    return groupDetail(ctx, groupId);
  });
}

async function ok(method: string, fn: () => Promise<unknown>): Promise<ApiAnswer> {
  if (method !== "GET" && method !== "HEAD") throw notAllowed(method, "GET, HEAD");
  return { status: 200, body: await fn() };
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ApiError(400, "invalid percent-encoding in the path");
  }
}

function queryObject(url: URL): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of url.searchParams) o[k] = v;
  return o;
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new ApiError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ApiError(400, "request body is not valid JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new ApiError(400, "request body must be a JSON object");
  return v as Record<string, unknown>;
}

function who(req: http.IncomingMessage, body: Record<string, unknown>): string {
  const by =
    typeof body.by === "string" && body.by.trim() !== "" ? body.by.trim().slice(0, 100) : "admin api";
  return `${by} from ${req.socket.remoteAddress ?? "?"}`;
}

async function knownGroup(ctx: ApiContext, groupId: string): Promise<void> {
  const sample = await ctx.sampler.latest();
  if (sample.groups.has(groupId)) return;
  const bindings = await listBindings(ctx.pool);
  if (bindings.some((b) => b.groupId === groupId)) return;
  // A group no longer bound that owes nothing may still have dead letters: the CLI re-drives
  // them, and the API answered 404 for them.
  const dead = await Promise.all(ctx.pools.map((p) => countDeadLetters(p, [groupId], 1)));
  if (dead.some((m) => (m.get(groupId) ?? 0) > 0)) return;
  throw new ApiError(404, `no group ${groupId}: not bound, nothing owed, no dead letters`);
}

/** The cluster view (see cluster.ts) at the sample's rates. */
async function cluster(ctx: ApiContext, sample: Sample): Promise<{ view: ClusterView; rows: NodeRow[] }> {
  const rows = await listNodes(ctx.pool);
  const view = clusterView(
    rows,
    {
      nodeId: ctx.source.nodeId,
      version: ctx.source.version,
      consumers: ctx.source.consumers(),
      rates: ctx.sampler.rates(sample),
    },
    Date.now(),
  );
  return { view, rows };
}

async function overview(ctx: ApiContext) {
  const [sample, bindings] = await Promise.all([ctx.sampler.latest(), listBindings(ctx.pool)]);
  const { view, rows } = await cluster(ctx, sample);
  const now = Date.now();
  const topics = [...new Set([...ctx.source.topics, ...bindings.map((b) => b.topic)])].sort();
  let owed = 0;
  for (const g of sample.groups.values()) owed += g.owed;
  return {
    node: { nodeId: ctx.source.nodeId, version: ctx.source.version, startedAt: ctx.source.startedAt },
    nodes: rows.map((n) => ({
      nodeId: n.nodeId,
      address: n.address,
      startedAt: n.startedAt,
      heartbeatAt: n.heartbeatAt,
      stoppedAt: n.stoppedAt,
      liveness: livenessOf(n, now),
      self: n.nodeId === ctx.source.nodeId,
      version: view.versions.get(n.nodeId) ?? null,
      rates: view.nodes.get(n.nodeId)?.rates ?? null,
    })),
    topics,
    groups: sample.groups.size,
    owed,
    pendingTransactions: sample.pendingTransactions,
    /** pendingTransactions is the count's cap: there are at least that many. */
    pendingTransactionsCapped: sample.pendingTransactions >= PENDING_COUNT_CAP,
    rates: { ...view.rates, scope: "cluster" },
    sampledAt: new Date(sample.at),
  };
}

/**
 * Most rows one `GET /api/groups/:group/history` returns, and how many by default; more come page
 * by page (its Link). The rows become JSON on the broker's event loop: 10,000 of them held it long
 * enough to take live deliveries' p99 from 12 to 239 ms (three readers: 1,241 ms), 100,000 a
 * node's publish p99 to 742 ms (operator walkthroughs, 2026-12-03).
 */
export const MAX_API_HISTORY_LIMIT = 2_000;
export const DEFAULT_API_HISTORY_LIMIT = 1_000;

/**
 * A page of the group's history. A full page answers with a Link to the next one (RFC 8288,
 * rel="next"): the same range after the page's last change (`after`), which pages through rows
 * of one instant that `since` alone cannot (see GROUP_HISTORY_SQL).
 */
async function history(groupId: string, url: URL, ctx: ApiContext): Promise<ApiAnswer> {
  const q = queryObject(url);
  const now = new Date();
  if (str(q, "since", 64) === undefined) throw new ApiError(400, "since is required");
  const since = time(q, "since", now, now);
  const until = time(q, "until", now, now);
  if (since >= until) throw new ApiError(400, "since must be before until");
  const limit = int(q, "limit", DEFAULT_API_HISTORY_LIMIT, 1, MAX_API_HISTORY_LIMIT);
  const afterText = str(q, "after", 64);
  const after = afterText === undefined ? undefined : parsePlace(afterText);
  const rows = await shardedGroupHistoryRows(ctx.pools, groupId, since, until, limit, after);
  const last = rows[rows.length - 1];
  const headers: Record<string, string> = {};
  if (rows.length === limit && last !== undefined) {
    const next = new URLSearchParams({
      since: since.toISOString(),
      until: until.toISOString(),
      limit: String(limit),
      after: formatPlace(last.place),
    });
    headers.Link = `<${url.pathname}?${next}>; rel="next"`;
  }
  return { status: 200, body: rows.map((r) => r.event), headers };
}

/** A history place as `after` carries it: microseconds.rank.messageId. */
function formatPlace(p: GroupHistoryPlace): string {
  return `${p.atMicros}.${p.rank}.${p.messageId}`;
}

const PLACE = /^(\d{1,16})\.([0-4])\.([0-9a-f]{32})$/;

function parsePlace(s: string): GroupHistoryPlace {
  const m = PLACE.exec(s);
  if (m === null) {
    throw new ApiError(
      400,
      "after must be the place a history page's Link names (microseconds.rank.messageId)",
    );
  }
  return { atMicros: Number(m[1]), rank: Number(m[2]), messageId: m[3]! };
}

function groupJson(
  groupId: string,
  sample: Sample,
  view: ClusterView,
  bindings: readonly Binding[],
  ctx: ApiContext,
) {
  return groupRow(groupId, sample.groups.get(groupId), view, bindings, [ctx.source.nodeId]);
}

async function groups(ctx: ApiContext) {
  const [sample, bindings] = await Promise.all([ctx.sampler.latest(), listBindings(ctx.pool)]);
  const { view } = await cluster(ctx, sample);
  const ids = [...new Set([...sample.groups.keys(), ...bindings.map((b) => b.groupId)])];
  return {
    sampledAt: new Date(sample.at),
    ratesScope: "cluster",
    consumersScope: "cluster",
    groups: sortGroupRows(ids.map((id) => groupJson(id, sample, view, bindings, ctx))),
  };
}

async function groupDetail(ctx: ApiContext, groupId: string) {
  const [sample, bindings] = await Promise.all([ctx.sampler.latest(), listBindings(ctx.pool)]);
  const { view } = await cluster(ctx, sample);
  const history = ctx.sampler.history();
  const series = history.map((s, i) => {
    const g = s.groups.get(groupId);
    const prev = i > 0 ? history[i - 1]?.groups.get(groupId) : undefined;
    const secs = i > 0 ? (s.at - (history[i - 1]?.at ?? s.at)) / 1000 : 0;
    const rate = (a?: number, b?: number) =>
      secs > 0 && a !== undefined ? Math.max(0, a - (b ?? 0)) / secs : 0;
    return {
      at: s.at,
      owed: g?.owed ?? 0,
      oldestOwedAgeSeconds: g?.oldestOwedAgeSeconds ?? 0,
      inFlight: g?.inFlight ?? 0,
      delivered: rate(g?.pushed, prev?.pushed),
      acked: rate(g?.acked, prev?.acked),
    };
  });
  return { ...groupJson(groupId, sample, view, bindings, ctx), sampledAt: new Date(sample.at), series };
}

function str(q: Record<string, unknown>, name: string, max = 256): string | undefined {
  const v = q[name];
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string" || v.length > max)
    throw new ApiError(400, `${name} must be a string of at most ${max} characters`);
  // PostgreSQL refuses a NUL in text: it came back as a 500 with the database's error.
  if (v.includes("\0")) throw new ApiError(400, `${name} must not contain a NUL character`);
  return v;
}

function time(q: Record<string, unknown>, name: string, now: Date, fallback: Date): Date {
  const v = str(q, name, 64);
  if (v === undefined) return fallback;
  const t = parseTime(v, now);
  if (t === undefined) {
    throw new ApiError(
      400,
      `${name} must be an ISO 8601 time, "now", or a duration ago (90s, 15m, 2h, 7d), got "${v}"`,
    );
  }
  return t;
}

function int(q: Record<string, unknown>, name: string, fallback: number, min: number, max: number): number {
  const v = q[name];
  // Absent takes the default; null does not (the console sent a mistyped max as null, and the
  // default 1,000 was re-driven).
  if (v === undefined || v === "") return fallback;
  const n = typeof v === "number" ? v : typeof v === "string" && /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ApiError(400, `${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(v)}`);
  }
  return n;
}

function bool(q: Record<string, unknown>, name: string): boolean {
  const v = q[name];
  if (v === undefined || v === null || v === "") return false;
  if (v === true || v === "true" || v === "1") return true;
  if (v === false || v === "false" || v === "0") return false;
  throw new ApiError(400, `${name} must be true or false`);
}

function filterOf(groupId: string, q: Record<string, unknown>): DeadLetterFilter {
  const now = new Date();
  const since = time(q, "since", now, new Date(0));
  const until = time(q, "until", now, new Date(now.getTime() + 1000));
  if (since >= until) throw new ApiError(400, "since must be before until");
  return {
    groupId,
    since,
    until,
    topic: str(q, "topic", MAX_NAME_CHARS),
    messageType: str(q, "messageType", MAX_NAME_CHARS),
    error: str(q, "error"),
  };
}

function encodeCursor(c: DeadLetterCursor): string {
  return Buffer.from(JSON.stringify([c.at, c.messagePk])).toString("base64url");
}

const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/;

function decodeCursor(s: string): DeadLetterCursor {
  try {
    const [at, pk] = JSON.parse(Buffer.from(s, "base64url").toString("utf8")) as [unknown, unknown];
    // Only what nextCursor holds (an ISO 8601 UTC time): Date.parse takes forms PostgreSQL does
    // not ("1", "5"), which came back as a 500 with a raw database error.
    if (
      typeof at === "string" &&
      CURSOR_TIME.test(at) &&
      !Number.isNaN(Date.parse(at)) &&
      Number.isSafeInteger(pk)
    ) {
      return { at, messagePk: pk as number };
    }
  } catch {
    // answered below
  }
  throw new ApiError(400, "invalid cursor (use the nextCursor of the previous page)");
}

/** A sharded walk's cursor: where each shard stands ([at, pk], null: not started, 0: done). */
function encodeShardedCursor(c: ShardedDeadLetterCursor): string {
  const parts = c.map((x) => (x === null ? null : x === "end" ? 0 : [x.at, x.messagePk]));
  return Buffer.from(JSON.stringify({ shards: parts })).toString("base64url");
}

function decodeShardedCursor(s: string, shards: number): ShardedDeadLetterCursor {
  try {
    const { shards: parts } = JSON.parse(Buffer.from(s, "base64url").toString("utf8")) as { shards: unknown };
    if (Array.isArray(parts) && parts.length === shards) {
      return parts.map((x) => {
        if (x === null) return null;
        if (x === 0) return "end";
        const [at, pk] = x as [unknown, unknown];
        if (typeof at === "string" && !Number.isNaN(Date.parse(at)) && Number.isSafeInteger(pk)) {
          return { at, messagePk: pk as number };
        }
        throw new Error("bad cursor");
      });
    }
  } catch {
    // answered below
  }
  throw new ApiError(400, "invalid cursor (use the nextCursor of the previous page)");
}

/** One page of the group's dead letters after the (opaque) cursor: one shard or all of them. */
async function deadLetterPageOf(
  ctx: ApiContext,
  filter: DeadLetterFilter,
  cursor: string | null,
  limit: number,
): Promise<{ items: DeadLetterRow[]; next: string | null }> {
  if (ctx.pools.length === 1) {
    const page = await deadLetterPage(ctx.pool, filter, cursor === null ? null : decodeCursor(cursor), limit);
    return { items: page.items, next: page.next === null ? null : encodeCursor(page.next) };
  }
  const c = cursor === null ? null : decodeShardedCursor(cursor, ctx.pools.length);
  const page = await shardedDeadLetterPage(ctx.pools, filter, c, limit);
  return { items: page.items, next: page.next === null ? null : encodeShardedCursor(page.next) };
}

async function deadLetters(ctx: ApiContext, groupId: string, q: Record<string, unknown>) {
  const filter = filterOf(groupId, q);
  const limit = int(q, "limit", 100, 1, 1000);
  const c = str(q, "cursor", 512);
  const page = await deadLetterPageOf(ctx, filter, c ?? null, limit);
  return { items: page.items, nextCursor: page.next };
}

/** A re-drive must be able to finish within this (max / ratePerSecond), so the request ends. */
export const MAX_REDRIVE_SECONDS = 600;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function redrive(ctx: ApiContext, groupId: string, q: Record<string, unknown>, by: string) {
  const filter = filterOf(groupId, q);
  const dryRun = bool(q, "dryRun");
  const max = int(q, "max", 1000, 1, 10_000);
  const rate = int(q, "ratePerSecond", 100, 1, 1000);
  const reason = str(q, "reason", 200) ?? "re-drive from the admin API";
  const expiresIn = int(q, "expiresInSeconds", 86_400, 1, 30 * 86_400);
  if (max / rate > MAX_REDRIVE_SECONDS) {
    throw new ApiError(
      400,
      `max / ratePerSecond must be at most ${MAX_REDRIVE_SECONDS} s: raise the rate or lower max`,
    );
  }
  // One at a time per server: a second one is refused while the first runs.
  if (ctx.redriveRun !== undefined) throw new ApiError(409, "a re-drive is already running on this node");
  if (ctx.stopping) throw new ApiError(503, "the node is stopping");
  const run = walk();
  ctx.redriveRun = run.catch(() => undefined);
  try {
    return await run;
  } finally {
    ctx.redriveRun = undefined;
  }

  async function walk() {
    const started = Date.now();
    // What was dead when the request started: a message re-driven here and dead-lettered again
    // before the walk's end came up again later in the same walk (re-driven twice, 69 of 2,500).
    if (filter.until.getTime() > started) filter.until = new Date(started);
    const seen = new Set<string>();
    const ids: string[] = [];
    let matched = 0;
    let attempted = 0;
    let redriven = 0;
    let cursor: string | null = null;
    let more = false;
    let stopped = false;
    while (matched < max && !stopped) {
      const page = await deadLetterPageOf(ctx, filter, cursor, Math.min(100, max - matched));
      const fresh: string[] = [];
      for (const item of page.items) {
        if (seen.has(item.messageId)) continue;
        seen.add(item.messageId);
        fresh.push(item.messageId);
        if (ids.length < 100) ids.push(item.messageId);
      }
      matched += fresh.length;
      // A tenth of a second's worth at the rate per transaction (one per message was a few
      // hundred a second at most, whatever the rate asked).
      const chunk = Math.max(1, Math.min(100, Math.floor(rate / 10)));
      for (let i = 0; !dryRun && i < fresh.length; i += chunk) {
        // Pace: the n-th re-drive starts no sooner than n / rate seconds after the first.
        const wait = started + (attempted * 1000) / rate - Date.now();
        if (wait > 0) await sleep(wait);
        // The node's shutdown: answer with what was done (it was cut off with no answer, and the
        // walk went on into pools being closed).
        if (ctx.stopping) {
          stopped = true;
          break;
        }
        const part = fresh.slice(i, i + chunk);
        attempted += part.length;
        const now = new Date();
        const args = {
          groupId,
          now,
          expiresAt: new Date(now.getTime() + expiresIn * 1000),
          nodeId: ctx.source.nodeId,
          reason: `redriven by ${by}: ${reason}`,
        };
        for (const [pool, ofShard] of messagesByShard(ctx.pools, part)) {
          redriven += (await redriveDeliveries(pool, ofShard, args)).size;
        }
      }
      if (page.next === null || stopped) break;
      cursor = page.next;
      // Stopped at max: whether anything is left (before, exactly max matched said "stopped at max").
      if (matched >= max) more = (await deadLetterPageOf(ctx, filter, cursor, 1)).items.length > 0;
    }
    // The overview, /api/groups and the gauge show the new count at their next sample, not at
    // the next periodic count.
    if (redriven > 0) ctx.sampler.recountDeadLetters();
    return {
      dryRun,
      matched,
      redriven,
      messageIds: ids,
      truncated: matched > ids.length,
      limitReached: more,
      // Stopped by the node's shutdown: what was re-driven is complete (a transaction a batch).
      ...(stopped
        ? { stopped: `the node is stopping: ${redriven} re-driven before it; run again for the rest` }
        : {}),
    };
  }
}
