/**
 * Read-only queries on the history (messages + message_events): what happened to one message,
 * what one group received in a time range, which of its messages are dead-lettered. Each is one
 * statement, exported as text so the README documents exactly what runs. Also the two cheap
 * probes the admin server needs (store ping, deliveries owed per group).
 */
import type pg from "pg";
import { ACK_WITH_PUSH_WINDOW_SECONDS, type EventKind } from "./event-kinds.js";

type Queryable = pg.Pool | pg.PoolClient;

/**
 * Tie-break for rows with the same timestamp (a push answered within the same millisecond):
 * what makes a delivery owed, then the push, then its outcome. Explicit, not the enum's order.
 */
function sameInstantOrder(kind: string): string {
  return `CASE ${kind}
    WHEN 'received' THEN 0 WHEN 'uncommitted' THEN 0 WHEN 'tx_checked' THEN 1 WHEN 'committed' THEN 2
    WHEN 'redriven' THEN 2 WHEN 'taken_over' THEN 2 WHEN 'delivered' THEN 3 ELSE 4 END`;
}
const SAME_INSTANT_ORDER = sameInstantOrder("x.kind");

/** The place $5 (microseconds since the epoch) as a time; exact below 2^53 us (year 2255). */
const AFTER_AT = "(timestamptz 'epoch' + $5::bigint * interval '1 microsecond')";

/**
 * The state changes a history row `e` stands for, as `x(at, kind, detail)`: itself, and before
 * it the `delivered` change an `acked` row carries in delivered_at (migration 0007).
 */
const STATE_CHANGES_OF_ROW = `CROSS JOIN LATERAL (
    SELECT e.at, e.kind, e.detail
    UNION ALL
    SELECT e.delivered_at, 'delivered'::message_event_kind, NULL WHERE e.delivered_at IS NOT NULL
  ) x(at, kind, detail)`;

/** "What happened to message X": every history row of the message, oldest first. */
export const MESSAGE_HISTORY_SQL = `
SELECT m.message_id, m.topic, m.message_type, m.group_id AS publisher_group_id, m."commit",
       m.created_at, m.stored_at, m.expires_at, m.deliver_limit, m.properties,
       octet_length(m.body) AS body_size,
       x.at, x.kind, e.group_id, e.attempt, e.node_id, x.detail
  FROM message_ids i
  JOIN messages m ON m.id = i.message_pk AND m.stored_at = i.stored_at
  JOIN message_events e ON e.message_pk = m.id
  ${STATE_CHANGES_OF_ROW}
 WHERE i.message_id = $1
 ORDER BY x.at, ${SAME_INSTANT_ORDER}`;

/**
 * A group history row's place key when its message is gone (retention dropped the day it was
 * received): 32 hex digits like a messageId, from the row's message_pk, so places keep one
 * order in PostgreSQL and in the sharded merge.
 */
const DROPPED_KEY = "lpad(to_hex(e.message_pk), 32, '0')";

/**
 * "What did group G receive between T1 and T2": the group's state changes (delivered, acked,
 * nacked, expired, dead_lettered, redriven) with a time in [T1, T2), oldest first, at most $4,
 * each with its place in that order (`at_us`: the time in microseconds since the epoch;
 * `same_instant`: the same-instant rank; then the messageId). With $5-$7 (a place: at_us, rank,
 * messageId) only the changes after it: the next page. A page boundary often falls among rows of
 * one instant (an ack batch's rows share its transaction's time), which `since` = the last row's
 * time would read again and the last time + 1 ms would skip.
 *
 * A merged `acked` row (see STATE_CHANGES_OF_ROW) lies at most W = ACK_WITH_PUSH_WINDOW_SECONDS
 * after the push it carries, so rows up to T2 + W are read for pushes before T2. And the $4-th
 * row after the place bounds the read: each row holds a change at its own time, so the first $4
 * changes are no later than that row's time, and no row more than W after it holds one of them.
 * The index range starts at the place, so a deep page costs what a first one does.
 */
export const GROUP_HISTORY_SQL = `
WITH bound AS (
  SELECT e.at + interval '${ACK_WITH_PUSH_WINDOW_SECONDS} second' AS upto FROM message_events e
   WHERE e.group_id = $1 AND e.at >= greatest($2, ${AFTER_AT}) AND e.at < $3
     AND ($5::bigint IS NULL OR e.at > ${AFTER_AT}
          OR (${sameInstantOrder("e.kind")},
              coalesce((SELECT message_id FROM messages WHERE id = e.message_pk LIMIT 1), ${DROPPED_KEY})) > ($6::int, $7::text))
   ORDER BY e.at OFFSET $4 - 1 LIMIT 1
)
SELECT x.at, x.kind, m.message_id, m.topic, m.message_type, e.attempt, e.node_id, x.detail,
       (extract(epoch FROM x.at) * 1000000)::bigint AS at_us, ${sameInstantOrder("x.kind")} AS same_instant,
       k.place_id
  FROM message_events e
  ${STATE_CHANGES_OF_ROW}
  -- An index probe per row (the message's day is not known here): never a scan of messages.
  -- Outer: a change made on a later day than its message's receipt outlives the message when
  -- retention drops that day; it is still the group's history, shown without the message.
  LEFT JOIN LATERAL (
    SELECT message_id, topic, message_type FROM messages WHERE id = e.message_pk LIMIT 1
  ) m ON true
  CROSS JOIN LATERAL (SELECT coalesce(m.message_id, ${DROPPED_KEY}) AS place_id) k
 WHERE e.group_id = $1 AND e.at >= greatest($2, ${AFTER_AT})
   AND e.at <= coalesce((SELECT upto FROM bound), $3 + interval '${ACK_WITH_PUSH_WINDOW_SECONDS} second')
   AND x.at >= $2 AND x.at < $3
   -- No change after the bound row's time is among the first $4 (see above): rows of the window
   -- past it are kept only for a push they carry from before, so the message of each of the
   -- others is not looked up (30,000 lookups for a page of 2,000 at 25,000 rows a second).
   AND x.at <= coalesce((SELECT upto FROM bound) - interval '${ACK_WITH_PUSH_WINDOW_SECONDS} second', $3)
   AND ($5::bigint IS NULL
        OR (x.at, ${sameInstantOrder("x.kind")}, k.place_id) > (${AFTER_AT}, $6::int, $7::text))
 ORDER BY x.at, ${sameInstantOrder("x.kind")}, k.place_id
 LIMIT $4`;

/**
 * The group's dead letters (dead_letters, migration 0013) dead-lettered in [T1, T2), oldest
 * first (dead_letters_group_idx).
 */
export const DEAD_LETTERS_SQL = `
SELECT message_id, topic, message_type, dead_at AS at, attempt, last_error AS detail
  FROM dead_letters
 WHERE group_id = $1 AND dead_at >= $2 AND dead_at < $3
 ORDER BY dead_at, message_id
 LIMIT $4`;

/** One history row. */
export interface HistoryEvent {
  at: Date;
  kind: EventKind;
  /** The subscriber group of a delivery row; null for message-wide rows (received, committed...). */
  groupId: string | null;
  attempt: number | null;
  nodeId: string | null;
  detail: string | null;
}

/** A message and its whole history. */
export interface MessageHistory {
  messageId: string;
  topic: string;
  messageType: string;
  /** The publishing group (header.groupId). */
  publisherGroupId: string;
  commit: boolean;
  createdAt: Date;
  storedAt: Date;
  expiresAt: Date;
  deliverLimit: number;
  properties: { key: string; value: string }[];
  bodySize: number;
  events: HistoryEvent[];
}

/**
 * A group's history row, with the message it is about; null when that message is no longer
 * stored (retention dropped the day it was received, after this change of a later day).
 */
export interface GroupEvent extends Omit<HistoryEvent, "groupId"> {
  messageId: string | null;
  topic: string | null;
  messageType: string | null;
}

/** A message dead-lettered for a group (see DEAD_LETTERS_SQL). */
export interface DeadLetter {
  messageId: string;
  topic: string;
  messageType: string;
  /** When it was dead-lettered. */
  at: Date;
  attempt: number | null;
  /** The reason of the nack that dead-lettered it. */
  detail: string | null;
}

/** Default row limit of groupHistory and deadLetters. */
export const DEFAULT_HISTORY_LIMIT = 10_000;

/**
 * Every history row of `messageId` (see MESSAGE_HISTORY_SQL), or null when no such message is
 * stored (or its partitions were dropped by retention). `messageId` is matched as given: KiteQ
 * ids are stored lower-case.
 */
export async function messageHistory(db: Queryable, messageId: string): Promise<MessageHistory | null> {
  const { rows } = await db.query({ text: MESSAGE_HISTORY_SQL, values: [messageId] });
  const first = rows[0];
  if (first === undefined) return null;
  return {
    messageId: first.message_id,
    topic: first.topic,
    messageType: first.message_type,
    publisherGroupId: first.publisher_group_id,
    commit: first.commit,
    createdAt: first.created_at,
    storedAt: first.stored_at,
    expiresAt: first.expires_at,
    deliverLimit: first.deliver_limit,
    properties: first.properties ?? [],
    bodySize: first.body_size,
    events: rows.map((r) => ({
      at: r.at,
      kind: r.kind,
      groupId: r.group_id,
      attempt: r.attempt,
      nodeId: r.node_id,
      detail: r.detail,
    })),
  };
}

/** A change's place in a group's history (see GROUP_HISTORY_SQL): where the next page starts. */
export interface GroupHistoryPlace {
  /** Its time in microseconds since the epoch. */
  atMicros: number;
  /** Its same-instant rank. */
  rank: number;
  messageId: string;
}

/** One page of a group's history, each change with its place. */
export interface GroupHistoryRow {
  event: GroupEvent;
  place: GroupHistoryPlace;
}

/**
 * The changes of `groupId` with at in [since, until), oldest first, after `after` when given
 * (see GROUP_HISTORY_SQL), each with its place.
 */
export async function groupHistoryRows(
  db: Queryable,
  groupId: string,
  since: Date,
  until: Date,
  limit = DEFAULT_HISTORY_LIMIT,
  after?: GroupHistoryPlace,
): Promise<GroupHistoryRow[]> {
  const { rows } = await db.query({
    text: GROUP_HISTORY_SQL,
    values: [
      groupId,
      since,
      until,
      limit,
      after?.atMicros ?? null,
      after?.rank ?? null,
      after?.messageId ?? null,
    ],
  });
  return rows.map((r) => ({
    event: {
      at: r.at,
      kind: r.kind,
      messageId: r.message_id,
      topic: r.topic,
      messageType: r.message_type,
      attempt: r.attempt,
      nodeId: r.node_id,
      detail: r.detail,
    },
    place: { atMicros: r.at_us, rank: r.same_instant, messageId: r.place_id },
  }));
}

/** The changes of `groupId` with at in [since, until), oldest first (see GROUP_HISTORY_SQL). */
export async function groupHistory(
  db: Queryable,
  groupId: string,
  since: Date,
  until: Date,
  limit = DEFAULT_HISTORY_LIMIT,
  after?: GroupHistoryPlace,
): Promise<GroupEvent[]> {
  return (await groupHistoryRows(db, groupId, since, until, limit, after)).map((r) => r.event);
}

/** The messages of `groupId` dead-lettered in [since, until) and still dead (see DEAD_LETTERS_SQL). */
export async function deadLetters(
  db: Queryable,
  groupId: string,
  since: Date,
  until: Date,
  limit = DEFAULT_HISTORY_LIMIT,
): Promise<DeadLetter[]> {
  const { rows } = await db.query({ text: DEAD_LETTERS_SQL, values: [groupId, since, until, limit] });
  return rows.map((r) => ({
    messageId: r.message_id,
    topic: r.topic,
    messageType: r.message_type,
    at: r.at,
    attempt: r.attempt,
    detail: r.detail,
  }));
}
