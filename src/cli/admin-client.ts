/**
 * How the CLI's read commands reach the data: through the running broker's admin JSON API when
 * one answers on the configured admin address (config.admin, default 127.0.0.1:13801; token from
 * --admin-token / KITEQ_ADMIN_TOKEN), else straight from the database as before (withStore).
 * `--verbose` says on stderr which path was taken.
 */
import type pg from "pg";
import { ErrorCode, KiteqError } from "../errors.js";
import type { CommandContext } from "./command.js";
import { withStore } from "./store.js";

/** How long the CLI waits for the broker's /healthz before it reads the database itself. */
export const ADMIN_PROBE_TIMEOUT_MS = 500;
/** How long one API request may take. */
export const ADMIN_REQUEST_TIMEOUT_MS = 60_000;

/** A running broker's admin API, as the CLI sees it. */
export interface AdminApi {
  /** e.g. http://127.0.0.1:13801 */
  readonly base: string;
  /** GET `path`: the JSON body (ISO 8601 times revived as Dates), or null on 404. */
  get<T>(path: string): Promise<T | null>;
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

/** The admin API of the broker on the configured admin address, or null when none answers. */
export async function findAdminApi(ctx: Pick<CommandContext, "config">): Promise<AdminApi | null> {
  const admin = ctx.config.admin;
  if (admin === null || admin.port === 0) return null;
  const base = `http://${hostOf(admin.host)}:${admin.port}`;
  try {
    const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(ADMIN_PROBE_TIMEOUT_MS) });
    await res.arrayBuffer();
    if (res.status !== 200) return null;
  } catch {
    return null;
  }
  const token = ctx.config.adminToken;
  return {
    base,
    async get<T>(path: string): Promise<T | null> {
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
      return body as T;
    },
  };
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
  const api = viaApi === null ? null : await findAdminApi(ctx);
  const verbose = ctx.args.has("verbose");
  if (api !== null && viaApi !== null) {
    if (verbose) ctx.out.err(`kiteq-pg: read through the admin API at ${api.base}`);
    return viaApi(api);
  }
  if (verbose) ctx.out.err("kiteq-pg: read from the database (no admin API answered)");
  return withStore(ctx.config, ctx.log, viaDb);
}
