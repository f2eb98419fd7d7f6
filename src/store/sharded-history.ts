/**
 * The history over several shards: a message's history is read from its own shard; a group's
 * history is read from every shard and merged in the order one database gives (time to the
 * microsecond, then the same-instant rank, then messageId), with the same limit, so the answers
 * are the same with one shard and with three. With one shard these are the plain queries.
 */
import type pg from "pg";
import { type ExplainOptions, explainMessage, type MessageExplanation } from "./explain.js";
import {
  DEFAULT_HISTORY_LIMIT,
  GROUP_HISTORY_SORTED_SQL,
  type GroupEvent,
  groupHistory,
  type MessageHistory,
  messageHistory,
} from "./history.js";
import { shardOf } from "./shard-hash.js";

/** The shard pool a messageId lives in (ids are matched lower-case, as KiteQ stores them). */
export function poolOfMessage(pools: readonly pg.Pool[], messageId: string): pg.Pool {
  return pools[shardOf(messageId.toLowerCase(), pools.length)]!;
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
): Promise<GroupEvent[]> {
  if (pools.length === 1) return groupHistory(pools[0]!, groupId, since, until, limit);
  const answers = await Promise.all(
    pools.map((p) => p.query({ text: GROUP_HISTORY_SORTED_SQL, values: [groupId, since, until, limit] })),
  );
  type Row = { r: Record<string, unknown> & { at_us: number; same_instant: number; message_id: string } };
  const all: Row[] = [];
  for (const a of answers) for (const r of a.rows) all.push({ r });
  // Stable: rows that tie on the whole key (one message's rows, so one shard's) keep their order.
  all.sort(
    ({ r: a }, { r: b }) =>
      a.at_us - b.at_us ||
      a.same_instant - b.same_instant ||
      (a.message_id < b.message_id ? -1 : a.message_id > b.message_id ? 1 : 0),
  );
  return all.slice(0, limit).map(({ r }) => ({
    at: r.at as Date,
    kind: r.kind as GroupEvent["kind"],
    messageId: r.message_id,
    topic: r.topic as string,
    messageType: r.message_type as string,
    attempt: r.attempt as number | null,
    nodeId: r.node_id as string | null,
    detail: r.detail as string | null,
  }));
}
