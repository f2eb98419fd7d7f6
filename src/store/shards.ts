/**
 * The store over several PostgreSQL databases (shards), as KiteQ's MySQL store spreads messages
 * over `shardnum` databases:
 *
 * - a message, its history rows, its deliveries and its pending transaction live in shard
 *   `fnv1a32(messageId) % count` (shard-hash.ts);
 * - bindings and the node list live in shard 0 and are read from there;
 * - every shard records, once, its own uuid, its index and the ordered list of every shard's
 *   uuid (shard_identity, migration 0008). A node given another list (another count, another
 *   order, a database of another store) refuses to start with one line naming the shard.
 *
 * With one URL the store is one shard: the same tables and statements as ever, plus the one-row
 * record written at the first start.
 */
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { redactUrl } from "../config/values.js";
import { ErrorCode, KiteqError, sqlState } from "../errors.js";
import { hostLabel, parseConnectionTarget } from "./hosts.js";
import { shardOf } from "./shard-hash.js";

/** SQLSTATE undefined_table. */
const UNDEFINED_TABLE = "42P01";

/** Advisory lock under which a node reads and (at creation) writes the shard records, in shard 0. */
const SHARD_LIST_LOCK_ID = 0x6b71736c; // "kqsl"

/**
 * What a URL names, for messages: hosts, port and database, never the credentials or options
 * (`postgres://u:pw@h1:5432,h2/kq?sslmode=require` -> `h1:5432,h2/kq`).
 */
export function shardLabel(url: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/]*@)?([^/?#]*)(\/[^?#]*)?/i.exec(url);
  if (m !== null) return `${m[1] ?? ""}${m[2] ?? ""}`;
  // libpq's keyword=value form: its hosts and dbname.
  try {
    const hosts = parseConnectionTarget(url).hosts.map(hostLabel).join(",");
    const db = /(?:^|\s)dbname\s*=\s*'?([^\s']+)/.exec(url)?.[1];
    return db === undefined ? hosts : `${hosts}/${db}`;
  } catch {
    return redactUrl(url);
  }
}

/** One shard's record (shard_identity). */
export interface ShardRecord {
  shardId: string;
  shardIndex: number;
  shardIds: string[];
}

async function readRecord(db: pg.Pool | pg.PoolClient): Promise<ShardRecord | null> {
  const { rows } = await db.query<{ shard_id: string; shard_index: number; shard_ids: string[] }>(
    "SELECT shard_id, shard_index, shard_ids FROM shard_identity LIMIT 1",
  );
  const r = rows[0];
  return r === undefined ? null : { shardId: r.shard_id, shardIndex: r.shard_index, shardIds: r.shard_ids };
}

async function writeRecord(db: pg.Pool, index: number, ids: readonly string[], now: Date): Promise<void> {
  // One row per database (unique index on (true)): a concurrent writer's row wins, and is checked.
  await db.query(
    `INSERT INTO shard_identity (shard_id, shard_index, shard_ids, created_at)
     VALUES ($1, $2, $3::uuid[], $4) ON CONFLICT DO NOTHING`,
    [ids[index], index, ids, now],
  );
}

/** The shard list given to this node differs from the one recorded at creation. */
export class ShardListMismatch extends KiteqError {
  constructor(message: string) {
    super(ErrorCode.ConfigInvalid, message, { key: "databaseUrl" });
  }
}

/**
 * Check that `pools` (the shards in the order given, migrated) are the store's shards in the order
 * recorded at its creation; record them when the store is new (or finish a creation that stopped
 * half-way: shard 0's record is written last). Returns the shard uuids. Throws ShardListMismatch,
 * one line naming the shard and what differs.
 */
export async function verifyShardList(
  pools: readonly pg.Pool[],
  labels: readonly string[],
  now = new Date(),
): Promise<string[]> {
  const n = pools.length;
  const lock = await pools[0]!.connect();
  try {
    await lock.query("SELECT pg_advisory_lock($1)", [SHARD_LIST_LOCK_ID]);
    try {
      const records = await Promise.all(pools.map((p) => readRecord(p)));
      let list = records[0]?.shardIds;
      if (records[0] !== null && records[0]!.shardIndex !== 0) {
        throw new ShardListMismatch(
          `shard 0 (${labels[0]}) is shard ${records[0]!.shardIndex} of the store recorded at its creation: ` +
            "give the URLs in the order the store was created with",
        );
      }
      if (list === undefined) {
        // New store (or a creation interrupted before shard 0's record): the other shards' records,
        // if any, must all name the same list of this length.
        const partial = records.find((r) => r !== null) ?? null;
        list = partial?.shardIds ?? Array.from({ length: n }, () => randomUUID());
      }
      if (list.length !== n) {
        throw new ShardListMismatch(
          `the store was created with ${list.length} shard${list.length === 1 ? "" : "s"} and this node was given ${n} ` +
            `database URL${n === 1 ? "" : "s"} (shard 0: ${labels[0]}); a store cannot be re-sharded: ` +
            `give the ${list.length} URL${list.length === 1 ? "" : "s"} it was created with, in order`,
        );
      }
      const missing: number[] = [];
      for (let i = 0; i < n; i++) {
        const r = records[i];
        if (r === null || r === undefined) {
          missing.push(i);
          continue;
        }
        if (r.shardId !== list[i] || r.shardIndex !== i || !sameList(r.shardIds, list)) {
          const at = list.indexOf(r.shardId);
          const what =
            at >= 0
              ? `it is shard ${at} of the store, not shard ${i} (give the URLs in the order of creation)`
              : `it belongs to another store (shard ${r.shardIndex} of ${r.shardIds.length}, uuid ${r.shardId})`;
          throw new ShardListMismatch(
            `shard ${i} (${labels[i]}) differs from the list recorded at creation: ${what}`,
          );
        }
      }
      if (missing.length > 0 && records[0] !== null) {
        const i = missing[0]!;
        throw new ShardListMismatch(
          `shard ${i} (${labels[i]}) has no shard record but the store was created with it ` +
            `(uuid ${list[i]}): it is not the database the store was created with`,
        );
      }
      // Creation: the other shards first, shard 0 (the reference) last.
      for (const i of missing.filter((m) => m !== 0)) await writeRecord(pools[i]!, i, list, now);
      if (missing.includes(0)) await writeRecord(pools[0]!, 0, list, now);
      // Read back: a row written meanwhile by something outside this lock (ON CONFLICT DO NOTHING
      // kept it) is not ours, and the list is then refused rather than half recorded.
      if (missing.length > 0) {
        const again = await Promise.all(missing.map((i) => readRecord(pools[i]!)));
        again.forEach((r, k) => {
          const i = missing[k]!;
          if (r === null || r.shardId !== list[i]) {
            throw new ShardListMismatch(
              `shard ${i} (${labels[i]}) was recorded by another node with another list`,
            );
          }
        });
      }
      return list;
    } finally {
      await lock.query("SELECT pg_advisory_unlock($1)", [SHARD_LIST_LOCK_ID]).catch(() => undefined);
    }
  } finally {
    lock.release();
  }
}

/**
 * The shard list check of a one-shot command (`history`, `bind add`, `redrive`, ...): read-only,
 * it never records a list. Every shard that answers must hold the record of its place in the list
 * given (same count, same order, same store); without this a command given the URLs in another
 * order read and wrote the wrong databases silently (`bind add` reported a binding no broker
 * reads, `history` "no message"). A store no broker has started yet (no records) passes. Returns
 * the shards that could not be reached (index -> error), for a read to go on without them and
 * name them; any other failure is thrown.
 */
export async function checkShardList(
  pools: readonly pg.Pool[],
  labels: readonly string[],
): Promise<Map<number, unknown>> {
  const n = pools.length;
  const read = await Promise.allSettled(pools.map((p) => readRecord(p)));
  const down = new Map<number, unknown>();
  const records: (ShardRecord | null | undefined)[] = read.map((r, i) => {
    if (r.status === "fulfilled") return r.value;
    // A schema before migration 0008 has no record (a read of it warns on the pending migrations).
    if (sqlState(r.reason) === UNDEFINED_TABLE) return null;
    if (!isUnreachable(r.reason)) throw r.reason;
    down.set(i, r.reason);
    return undefined;
  });
  const reference = records.find((r) => r !== null && r !== undefined);
  if (reference === undefined) return down;
  const list = reference.shardIds;
  if (list.length !== n) {
    throw new ShardListMismatch(
      `the store was created with ${list.length} shard${list.length === 1 ? "" : "s"} and this command was given ${n} ` +
        `database URL${n === 1 ? "" : "s"} (shard 0: ${labels[0]}): give the ${list.length} URL${list.length === 1 ? "" : "s"} ` +
        "the brokers run with, in the same order",
    );
  }
  records.forEach((r, i) => {
    if (r === undefined) return;
    if (r === null) {
      throw new ShardListMismatch(
        `shard ${i} (${labels[i]}) has no shard record but the store was created with it (uuid ${list[i]}): ` +
          "it is not the database the store was created with",
      );
    }
    if (r.shardId !== list[i] || r.shardIndex !== i || !sameList(r.shardIds, list)) {
      const at = list.indexOf(r.shardId);
      throw new ShardListMismatch(
        `shard ${i} (${labels[i]}) differs from the list recorded at creation: ` +
          (at >= 0
            ? `it is shard ${at} of the store, not shard ${i} (give the URLs in the order the brokers run with)`
            : `it belongs to another store (shard ${r.shardIndex} of ${r.shardIds.length}, uuid ${r.shardId})`),
      );
    }
  });
  return down;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * With several shards, a connection attempt gives up after this long (broker and CLI): a shard
 * that does not answer must cost its own publishes and reads a few seconds at most, never the 10 s
 * of the single-database default.
 */
export const SHARD_CONNECT_TIMEOUT_MS = 3000;

/** How long a shard that failed on its connection is answered "down" without being tried. */
export const SHARD_DOWN_MS = 1000;

/**
 * Whether `err` says the database cannot be reached (rather than that a statement failed on its
 * data or its locks): no SQLSTATE at all (connection refused, reset, timeout), class 08
 * (connection exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now), 53
 * (insufficient resources: too many connections).
 */
export function isUnreachable(err: unknown): boolean {
  const state = sqlState(err);
  if (state === undefined) return true;
  return state.startsWith("08") || state.startsWith("53") || /^57P0[123]$/.test(state);
}

/**
 * A shard's health as this node sees it: a connection failure marks it down for SHARD_DOWN_MS,
 * during which publishes hashed to it are refused at once (not after a connect timeout); the next
 * write after that tries again, and a success marks it up.
 */
export class ShardHealth {
  private downUntil = 0;
  /** Why it is down (the last connection error). */
  reason = "";
  /** When it went down (0: up). */
  downSince = 0;

  constructor(
    readonly index: number,
    readonly label: string,
  ) {}

  /** Down and not to be tried before `downUntil`. */
  isDown(now = Date.now()): boolean {
    return now < this.downUntil;
  }

  /** Whether it was seen down and has not succeeded since. */
  get unhealthy(): boolean {
    return this.downSince !== 0;
  }

  /** Record a failure; true when it says the shard is unreachable (it is then marked down). */
  failed(err: unknown, now = Date.now()): boolean {
    if (!isUnreachable(err)) return false;
    this.downUntil = now + SHARD_DOWN_MS;
    if (this.downSince === 0) this.downSince = now;
    this.reason = err instanceof Error ? err.message : String(err);
    return true;
  }

  /** A statement succeeded on it. */
  up(): void {
    this.downUntil = 0;
    this.downSince = 0;
    this.reason = "";
  }

  /** The refusal a publish to it gets while it is down. */
  refusal(): string {
    return `shard ${this.index} (${this.label}) is down: ${this.reason || "unreachable"}`;
  }
}

/** Routes messages to shards: `count` fixed for the store's life. */
export interface ShardRouter {
  readonly count: number;
  /** The shard of a messageId. */
  of(messageId: string): number;
}

/** The router of a store of `count` shards. */
export function shardRouter(count: number): ShardRouter {
  return { count, of: count === 1 ? () => 0 : (id) => shardOf(id, count) };
}

/** Group `items` by shard (by `idOf`), keeping their order within each; index i = shard i. */
export function splitByShard<T>(items: readonly T[], count: number, idOf: (t: T) => string): T[][] {
  const out: T[][] = Array.from({ length: count }, () => []);
  for (const it of items) out[shardOf(idOf(it), count)]!.push(it);
  return out;
}
