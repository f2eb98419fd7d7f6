/**
 * Operator reads for the admin API and console: the nodes, each group's backlog (owed from the
 * trigger-kept counts, oldest due delivery by one index probe per group), and a group's dead letters paged by keyset with filters. Every
 * statement has an index path (they are in the plan catalogue).
 */
import type pg from "pg";
import type { NodeStatsPair } from "./nodes.js";

type Queryable = pg.Pool | pg.PoolClient;

/**
 * Every node that ever ran on this database, and whether its current run was declared dead (its
 * process gone: its liveness lock freed, or it left ZooKeeper), which is what takeover acts on.
 */
export const LIST_NODES_SQL = `
SELECT node_id, address, started_at, heartbeat_at, stopped_at, stats,
       claimer IS NOT NULL AND EXISTS (SELECT 1 FROM dead_claimers dc WHERE dc.claimer = nodes.claimer) AS declared_dead
  FROM nodes ORDER BY node_id`;

/** A node as the nodes table knows it. */
export interface NodeRow {
  nodeId: string;
  address: string;
  startedAt: Date;
  heartbeatAt: Date;
  stoppedAt: Date | null;
  /** Its current run was declared dead (dead_claimers): it did not stop cleanly, its work was freed. */
  declaredDead: boolean;
  /** Its last two heartbeat snapshots (null before its first heartbeat with stats). */
  stats: NodeStatsPair | null;
}

/** The nodes table. */
export async function listNodes(db: Queryable): Promise<NodeRow[]> {
  const { rows } = await db.query(LIST_NODES_SQL);
  return rows.map((r) => ({
    nodeId: r.node_id,
    address: r.address,
    startedAt: r.started_at,
    heartbeatAt: r.heartbeat_at,
    stoppedAt: r.stopped_at,
    declaredDead: r.declared_dead === true,
    stats: r.stats ?? null,
  }));
}

/**
 * Per group with anything owed (or named in $1): the owed count (owed_counts) and the earliest
 * next_attempt_at (one index-ordered probe of deliveries_due_idx per group). What nodes hold in
 * flight comes from their heartbeats (nodes.stats), not from the table: no index names claimed_by.
 */
export const GROUP_BACKLOG_SQL = `
WITH g AS (
  SELECT group_id, sum(owed)::int8 AS owed FROM owed_counts GROUP BY group_id
  UNION ALL
  SELECT x, 0 FROM unnest($1::text[]) AS x
), groups AS (
  SELECT group_id, sum(owed)::int8 AS owed FROM g GROUP BY group_id
)
SELECT groups.group_id, groups.owed, o.next_attempt_at AS oldest_due
  FROM groups
  LEFT JOIN LATERAL (
    SELECT next_attempt_at FROM deliveries d WHERE d.group_id = groups.group_id
     ORDER BY d.next_attempt_at LIMIT 1
  ) o ON true
 ORDER BY groups.group_id`;

/** One group's backlog. */
export interface GroupBacklog {
  groupId: string;
  /** Deliveries owed (all nodes). */
  owed: number;
  /** The earliest next_attempt_at of its owed deliveries (null when nothing is owed). */
  oldestDue: Date | null;
}

/**
 * Backlog of every group owed something, plus `groups` (bound groups with nothing owed)
 * (see GROUP_BACKLOG_SQL).
 */
export async function groupBacklogs(db: Queryable, groups: readonly string[]): Promise<GroupBacklog[]> {
  const { rows } = await db.query({ text: GROUP_BACKLOG_SQL, values: [groups] });
  return rows.map((r) => ({
    groupId: r.group_id,
    owed: Number(r.owed),
    oldestDue: r.oldest_due,
  }));
}

/** Filters of a dead-letter listing (and of a re-drive by filter). */
export interface DeadLetterFilter {
  groupId: string;
  /** Dead-lettered in [since, until). */
  since: Date;
  until: Date;
  topic?: string | undefined;
  messageType?: string | undefined;
  /** Case-insensitive substring of the last nack's reason. */
  error?: string | undefined;
}

/** Where a page ends: the (at, message_pk) of its last row. */
export interface DeadLetterCursor {
  /** ISO 8601 with microseconds (history times have them; a Date would round them off). */
  at: string;
  messagePk: number;
}

/**
 * A group's dead letters (dead_letters, migration 0013: its messages whose delivery ended at the
 * deliver limit and was not given again) dead-lettered in [$2, $3), filtered, after the cursor
 * ($7, $8), in (at, pk) order: a walk of dead_letters_group_idx that stops at the LIMIT. A filter
 * reads the rows themselves (no probe per row): one matching nothing costs the group's current
 * dead letters, not every one it ever had.
 */
export const DEAD_LETTER_PAGE_SQL = `
SELECT message_pk, message_id, topic, message_type, dead_at AS at, attempt, last_error,
       to_char(dead_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at_exact
  FROM dead_letters
 WHERE group_id = $1 AND dead_at >= $2 AND dead_at < $3
   AND ($7::timestamptz IS NULL OR dead_at > $7 OR (dead_at = $7 AND message_pk > $8))
   AND ($4::text IS NULL OR topic = $4)
   AND ($5::text IS NULL OR message_type = $5)
   AND ($6::text IS NULL OR strpos(lower(coalesce(last_error, '')), lower($6)) > 0)
 ORDER BY dead_at, message_pk
 LIMIT $9`;

/** A dead letter of a page. */
export interface DeadLetterRow {
  messageId: string;
  topic: string;
  messageType: string;
  /** When it was (last) dead-lettered. */
  at: Date;
  attempt: number | null;
  /** The reason of its last nack. */
  lastError: string | null;
}

/** One page of dead letters and the cursor of the next (null at the end). */
export interface DeadLetterPage {
  items: DeadLetterRow[];
  next: DeadLetterCursor | null;
}

/** Up to `limit` dead letters matching `filter`, after `cursor` (see DEAD_LETTER_PAGE_SQL). */
export async function deadLetterPage(
  db: Queryable,
  filter: DeadLetterFilter,
  cursor: DeadLetterCursor | null,
  limit: number,
): Promise<DeadLetterPage> {
  const { rows } = await db.query({
    text: DEAD_LETTER_PAGE_SQL,
    values: [
      filter.groupId,
      filter.since,
      filter.until,
      filter.topic ?? null,
      filter.messageType ?? null,
      filter.error ?? null,
      cursor?.at ?? null,
      cursor?.messagePk ?? 0,
      limit + 1,
    ],
  });
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  const last = page[page.length - 1];
  return {
    items: page.map((r) => ({
      messageId: r.message_id,
      topic: r.topic,
      messageType: r.message_type,
      at: r.at,
      attempt: r.attempt,
      lastError: r.last_error,
    })),
    next: more && last !== undefined ? { at: last.at_exact, messagePk: Number(last.message_pk) } : null,
  };
}

/** At most this many dead letters are counted per group (the gauge reads "this many or more"). */
export const DEAD_LETTER_COUNT_CAP = 1000;

/**
 * Per group of $1, how many dead letters it has, counted up to $2: the first $2 entries of
 * dead_letters_group_idx (the ORDER BY keeps the planner on it: with statistics it chose a skip
 * scan of the primary key, whose leading column is the message, 7x slower at 100,000).
 */
export const COUNT_DEAD_LETTERS_SQL = `
SELECT g.group_id, c.n
  FROM unnest($1::text[]) AS g(group_id)
  CROSS JOIN LATERAL (
    SELECT count(*)::int8 AS n FROM (
      SELECT 1 FROM dead_letters d WHERE d.group_id = g.group_id ORDER BY d.dead_at LIMIT $2
    ) x
  ) c`;

/** Dead letters per group, capped at `cap` (see COUNT_DEAD_LETTERS_SQL). */
export async function countDeadLetters(
  db: Queryable,
  groups: readonly string[],
  cap = DEAD_LETTER_COUNT_CAP,
): Promise<Map<string, number>> {
  const { rows } = await db.query({ text: COUNT_DEAD_LETTERS_SQL, values: [groups, cap] });
  return new Map(rows.map((r) => [r.group_id as string, Number(r.n)]));
}

/** At most this many pending 2PC messages are counted (the gauge reads "this many or more"). */
// 10,000: a 2PC backlog beyond it is an incident whatever its size, and counting 100,000 rows took
// 25 ms of every 5 s sample at a 1,000,000 backlog (bench backlog), 4x the count of a small one.
export const PENDING_COUNT_CAP = 10_000;

/** Uncommitted messages, counted up to $1 along pending_transactions_stored_idx. */
export const COUNT_PENDING_SQL = `
SELECT count(*)::int8 AS n FROM (SELECT 1 FROM pending_transactions ORDER BY stored_at LIMIT $1) p`;

/** How many 2PC messages wait for their commit (capped, see COUNT_PENDING_SQL). */
export async function countPendingTransactions(db: Queryable, cap = PENDING_COUNT_CAP): Promise<number> {
  const { rows } = await db.query({ text: COUNT_PENDING_SQL, values: [cap] });
  return Number(rows[0]?.n ?? 0);
}
