/**
 * Reads over several shards: a message's history is read from its own shard; a group's history is
 * read from every shard and merged in the order one database gives (time to the microsecond, then
 * the same-instant rank, then messageId), with the same limit, so the answers are the same with
 * one shard and with three; the admin server's counts (owed, backlogs, pending transactions, dead
 * letters) are summed over the shards. With one shard these are the plain queries.
 */
import type pg from "pg";
import { countOwedDeliveries } from "./deliveries.js";
import { type ExplainOptions, explainMessage, type MessageExplanation } from "./explain.js";
import {
  countDeadLetters,
  countPendingTransactions,
  DEAD_LETTER_COUNT_CAP,
  type DeadLetterCursor,
  type DeadLetterFilter,
  type DeadLetterRow,
  deadLetterPage,
  type GroupBacklog,
  groupBacklogs,
  PENDING_COUNT_CAP,
} from "./groups.js";
import {
  DEFAULT_HISTORY_LIMIT,
  type DeadLetter,
  deadLetters,
  type GroupEvent,
  type GroupHistoryPlace,
  type GroupHistoryRow,
  groupHistoryRows,
  type MessageHistory,
  messageHistory,
} from "./history.js";
import { shardOf } from "./shard-hash.js";

/** The shard pool a messageId lives in (ids are matched lower-case, as KiteQ stores them). */
export function poolOfMessage(pools: readonly pg.Pool[], messageId: string): pg.Pool {
  return pools[shardOf(messageId.toLowerCase(), pools.length)]!;
}

/** `messageIds` grouped by the shard pool each lives in (a write of several, one per shard). */
export function messagesByShard(
  pools: readonly pg.Pool[],
  messageIds: readonly string[],
): Map<pg.Pool, string[]> {
  const by = new Map<pg.Pool, string[]>();
  for (const id of messageIds) {
    const pool = poolOfMessage(pools, id);
    const list = by.get(pool);
    if (list === undefined) by.set(pool, [id]);
    else list.push(id);
  }
  return by;
}

/** messageHistory in the message's shard. */
export function shardedMessageHistory(
  pools: readonly pg.Pool[],
  messageId: string,
): Promise<MessageHistory | null> {
  return messageHistory(poolOfMessage(pools, messageId), messageId);
}

/** explainMessage in the message's shard. */
export function shardedExplain(
  pools: readonly pg.Pool[],
  messageId: string,
  now?: Date,
  options?: ExplainOptions,
): Promise<MessageExplanation | null> {
  return explainMessage(poolOfMessage(pools, messageId), messageId, now, {
    bindingsDb: pools[0],
    ...options,
  });
}

/** groupHistory over every shard, merged in order (see module comment). */
export async function shardedGroupHistory(
  pools: readonly pg.Pool[],
  groupId: string,
  since: Date,
  until: Date,
  limit = DEFAULT_HISTORY_LIMIT,
  after?: GroupHistoryPlace,
): Promise<GroupEvent[]> {
  return (await shardedGroupHistoryRows(pools, groupId, since, until, limit, after)).map((r) => r.event);
}

/** groupHistoryRows over every shard, merged in order (see module comment). */
export async function shardedGroupHistoryRows(
  pools: readonly pg.Pool[],
  groupId: string,
  since: Date,
  until: Date,
  limit = DEFAULT_HISTORY_LIMIT,
  after?: GroupHistoryPlace,
): Promise<GroupHistoryRow[]> {
  if (pools.length === 1) return groupHistoryRows(pools[0]!, groupId, since, until, limit, after);
  const answers = await Promise.all(
    pools.map((p) => groupHistoryRows(p, groupId, since, until, limit, after)),
  );
  // Stable: rows that tie on the whole key (one message's rows, so one shard's) keep their order.
  return answers
    .flat()
    .sort(({ place: a }, { place: b }) => comparePlaces(a, b))
    .slice(0, limit);
}

/** The order of GROUP_HISTORY_SQL (messageIds are lower-case hex: code points sort as PostgreSQL does). */
function comparePlaces(a: GroupHistoryPlace, b: GroupHistoryPlace): number {
  return (
    a.atMicros - b.atMicros ||
    a.rank - b.rank ||
    (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0)
  );
}

/** countOwedDeliveries summed over the shards. */
export async function shardedCountOwed(pools: readonly pg.Pool[]): Promise<Map<string, number>> {
  if (pools.length === 1) return countOwedDeliveries(pools[0]!);
  const sum = new Map<string, number>();
  for (const m of await Promise.all(pools.map((p) => countOwedDeliveries(p)))) {
    for (const [g, n] of m) sum.set(g, (sum.get(g) ?? 0) + n);
  }
  return sum;
}

/** groupBacklogs over the shards: owed summed, the oldest due the earliest; by group id. */
export async function shardedGroupBacklogs(
  pools: readonly pg.Pool[],
  groups: readonly string[],
): Promise<GroupBacklog[]> {
  if (pools.length === 1) return groupBacklogs(pools[0]!, groups);
  const merged = new Map<string, GroupBacklog>();
  for (const list of await Promise.all(pools.map((p) => groupBacklogs(p, groups)))) {
    for (const b of list) {
      const m = merged.get(b.groupId);
      if (m === undefined) {
        merged.set(b.groupId, { ...b });
        continue;
      }
      m.owed += b.owed;
      if (b.oldestDue !== null && (m.oldestDue === null || b.oldestDue < m.oldestDue))
        m.oldestDue = b.oldestDue;
    }
  }
  return [...merged.values()].sort((a, b) => (a.groupId < b.groupId ? -1 : a.groupId > b.groupId ? 1 : 0));
}

/** countPendingTransactions summed over the shards, capped as one count is (PENDING_COUNT_CAP). */
export async function shardedCountPending(pools: readonly pg.Pool[]): Promise<number> {
  const counts = await Promise.all(pools.map((p) => countPendingTransactions(p)));
  // The cap is the cluster's, not each shard's (as the dead letters' count).
  return Math.min(
    counts.reduce((a, b) => a + b, 0),
    PENDING_COUNT_CAP,
  );
}

/** countDeadLetters summed over the shards. */
export async function shardedCountDeadLetters(
  pools: readonly pg.Pool[],
  groups: readonly string[],
): Promise<Map<string, number>> {
  if (pools.length === 1) return countDeadLetters(pools[0]!, groups);
  const sum = new Map<string, number>();
  for (const m of await Promise.all(pools.map((p) => countDeadLetters(p, groups)))) {
    for (const [g, n] of m) sum.set(g, (sum.get(g) ?? 0) + n);
  }
  // The cap is the cluster's, not each shard's (two shards at their cap read 2,000).
  for (const [g, n] of sum) sum.set(g, Math.min(n, DEAD_LETTER_COUNT_CAP));
  return sum;
}

/** deadLetters over the shards, merged in DEAD_LETTERS_SQL's order (at, messageId), same limit. */
export async function shardedDeadLetters(
  pools: readonly pg.Pool[],
  groupId: string,
  since: Date,
  until: Date,
  limit = DEFAULT_HISTORY_LIMIT,
): Promise<DeadLetter[]> {
  if (pools.length === 1) return deadLetters(pools[0]!, groupId, since, until, limit);
  const all = (await Promise.all(pools.map((p) => deadLetters(p, groupId, since, until, limit)))).flat();
  all.sort(
    (a, b) =>
      a.at.getTime() - b.at.getTime() || (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0),
  );
  return all.slice(0, limit);
}

/** Where a sharded dead-letter walk stands in each shard: not started, after a row, or done. */
export type ShardedDeadLetterCursor = (DeadLetterCursor | null | "end")[];

/**
 * One page of dead letters over the shards: each shard's next rows after its own cursor, merged by
 * time (ties in shard order), the first `limit` taken; the returned cursor says where each shard
 * stands (null at the end of every shard). A shard whose rows were only partly taken is asked
 * once more for the cursor after the last row taken.
 */
export async function shardedDeadLetterPage(
  pools: readonly pg.Pool[],
  filter: DeadLetterFilter,
  cursor: ShardedDeadLetterCursor | null,
  limit: number,
): Promise<{ items: DeadLetterRow[]; next: ShardedDeadLetterCursor | null }> {
  const at = (i: number) => cursor?.[i] ?? null;
  const pages = await Promise.all(
    pools.map((p, i) => {
      const c = at(i);
      return c === "end" ? Promise.resolve({ items: [], next: null }) : deadLetterPage(p, filter, c, limit);
    }),
  );
  const all = pages.flatMap((page, shard) => page.items.map((item) => ({ item, shard })));
  all.sort((a, b) => a.item.at.getTime() - b.item.at.getTime() || a.shard - b.shard);
  const taken = all.slice(0, limit);
  const counts = pools.map((_, i) => taken.filter((t) => t.shard === i).length);
  const next: ShardedDeadLetterCursor = await Promise.all(
    pools.map(async (p, i) => {
      const c = at(i);
      const page = pages[i]!;
      if (c === "end") return "end" as const;
      if (counts[i] === page.items.length) return page.next ?? ("end" as const);
      if (counts[i] === 0) return c;
      // Partly taken: the cursor after the last row taken.
      const part = await deadLetterPage(p, filter, c, counts[i]!);
      return part.next ?? ("end" as const);
    }),
  );
  return { items: taken.map((t) => t.item), next: next.every((c) => c === "end") ? null : next };
}
