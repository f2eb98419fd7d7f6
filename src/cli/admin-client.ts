/**
 * How the CLI's read commands reach the data: through the running broker's admin JSON API when
 * one answers on the configured admin address (config.admin, default 127.0.0.1:13801; token from
 * --admin-token / KITEQ_ADMIN_TOKEN) and serves the same store, else straight from the database
 * (withStore).
 * `--verbose` says on stderr which path was taken.
 */
import type pg from "pg";
import { storeIdentity } from "../config/store-identity.js";
import { ErrorCode, KiteqError } from "../errors.js";
import type { CommandContext } from "./command.js";
import { withStore } from "./store.js";

/**
 * How long the CLI waits for the broker's /healthz before it reads the database itself. Nothing
 * listening answers at once (connection refused); 500 ms sent a loaded broker's reads to the
 * database instead (the same answer by another path, and a test's flake on a busy machine).
 */
export const ADMIN_PROBE_TIMEOUT_MS = 2000;
/** How long one API request may take. */
export const ADMIN_REQUEST_TIMEOUT_MS = 60_000;

/** A running broker's admin API, as the CLI sees it. */
export interface AdminApi {
  /** e.g. http://127.0.0.1:13801 */
  readonly base: string;
  /** GET `path`: the JSON body (ISO 8601 times revived as Dates), or null on 404. */
  get<T>(path: string): Promise<T | null>;
  /** get, with the path of the next page when the answer names one (Link rel="next"). */
  getPage<T>(path: string): Promise<{ body: T; next: string | null } | null>;
}

/** The path of a Link header's rel="next" (RFC 8288), or null. */
export function nextLink(link: string | null): string | null {
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link ?? "");
  return m?.[1] ?? null;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * JSON.parse reviver: every string that is exactly a Date's toISOString becomes that Date again,
 * so the formatters get what the store functions return (and print the same text).
 */
export function reviveDates(_key: string, value: unknown): unknown {
  return typeof value === "string" && ISO_TIME.test(value) ? new Date(value) : value;
}

function hostOf(host: string): string {
  if (host === "0.0.0.0" || host === "" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

/**
 * The admin API of the broker on the configured admin address, when one answers there and
 * serves the store this CLI is configured for (its /healthz names it: config/store-identity.ts);
 * else why not.
 */
export async function findAdminApi(
  ctx: Pick<CommandContext, "config">,
): Promise<{ api: AdminApi; note?: string } | { api: null; why: string }> {
  const admin = ctx.config.admin;
  if (admin === null || admin.port === 0) return { api: null, why: "the admin API is off (--admin)" };
  const base = `http://${hostOf(admin.host)}:${admin.port}`;
  let mismatch: string | undefined;
  try {
    // With the token when there is one: /healthz names its store only to an authorised caller.
    const res = await fetch(`${base}/healthz`, {
      headers: ctx.config.adminToken === null ? {} : { Authorization: `Bearer ${ctx.config.adminToken}` },
      signal: AbortSignal.timeout(ADMIN_PROBE_TIMEOUT_MS),
    });
    const text = await res.text();
    if (res.status !== 200) return { api: null, why: `the admin API at ${base} answered ${res.status}` };
    let store: unknown;
    try {
      store = (JSON.parse(text) as { store?: unknown } | null)?.store;
    } catch {
      store = undefined;
    }
    if (store !== storeIdentity(ctx.config)) {
      // The default address may be any broker of this machine: only a broker of this store is
      // read. An address given on purpose is read (an operator without database access reads a
      // remote broker), with a note when a --db given as well names another database.
      if (!ctx.config.adminGiven) {
        return {
          api: null,
          why:
            typeof store === "string"
              ? `the broker at ${base} serves another store than this command's`
              : `the broker at ${base} did not say which store it serves (no or a wrong admin token)`,
        };
      }
      // Said, and not this one (unsaid without the token: the API then answers 401 anyway).
      if (typeof store === "string" && ctx.config.databaseUrls.length > 0) {
        mismatch = `kiteq-pg: note: the broker at ${base} (--admin) serves another database than --db names: read through the broker`;
      }
    }
  } catch {
    return { api: null, why: "no admin API answered" };
  }
  const token = ctx.config.adminToken;
  const api: AdminApi = {
    base,
    async get<T>(path: string): Promise<T | null> {
      return (await this.getPage<T>(path))?.body ?? null;
    },
    async getPage<T>(path: string): Promise<{ body: T; next: string | null } | null> {
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, {
          headers: token === null ? {} : { Authorization: `Bearer ${token}` },
          signal: AbortSignal.timeout(ADMIN_REQUEST_TIMEOUT_MS),
        });
      } catch (err) {
        throw new KiteqError(
          ErrorCode.Timeout,
          `the admin API at ${base} did not answer ${path}: ${(err as Error).message}`,
        );
      }
      const text = await res.text();
      if (res.status === 404) return null;
      if (res.status === 401) {
        throw new KiteqError(
          ErrorCode.AuthRefused,
          token === null
            ? `the admin API at ${base} requires an admin token: give the broker's token with --admin-token or KITEQ_ADMIN_TOKEN`
            : `the admin API at ${base} refused the admin token: give the broker's token with --admin-token or KITEQ_ADMIN_TOKEN`,
        );
      }
      let body: unknown;
      try {
        body = JSON.parse(text, reviveDates);
      } catch {
        throw new KiteqError(
          ErrorCode.StoreFailed,
          `the admin API at ${base} answered ${res.status} without JSON`,
        );
      }
      if (res.status !== 200) {
        const error = (body as { error?: unknown } | null)?.error;
        throw new KiteqError(
          ErrorCode.StoreFailed,
          `the admin API at ${base} answered ${res.status}: ${typeof error === "string" ? error : text.slice(0, 200)}`,
        );
      }
      return { body: body as T, next: nextLink(res.headers.get("link")) };
    },
  };
  return mismatch === undefined ? { api } : { api, note: mismatch };
}

/**
 * Read through the broker's admin API when one answers (`viaApi`), else from the database
 * (`viaDb`, as withStore). With --verbose, one line on stderr says which.
 */
export async function readThrough<T>(
  ctx: Pick<CommandContext, "config" | "log" | "args" | "out">,
  viaApi: ((api: AdminApi) => Promise<T>) | null,
  viaDb: (pool: pg.Pool, shards: readonly pg.Pool[]) => Promise<T>,
): Promise<T> {
  const found = viaApi === null ? null : await findAdminApi(ctx);
  const verbose = ctx.args.has("verbose");
  if (found !== null && found.api !== null && viaApi !== null) {
    if ("note" in found && found.note !== undefined) ctx.out.err(found.note);
    if (verbose) ctx.out.err(`kiteq-pg: read through the admin API at ${found.api.base}`);
    return viaApi(found.api);
  }
  const why = found === null ? "the admin API does not serve this read" : "why" in found ? found.why : "";
  if (verbose) ctx.out.err(`kiteq-pg: read from the database (${why})`);
  return withStore(ctx.config, ctx.log, viaDb, { readOnly: true, reads: true });
}
