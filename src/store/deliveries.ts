/**
 * Statements on the deliveries table (what is still owed to each group) and the history rows
 * written with each change. Time is always a parameter.
 */
import type pg from "pg";
import { inOneTransaction, inTransaction } from "./db.js";
import { ACK_WITH_PUSH_WINDOW_SECONDS } from "./event-kinds.js";
import { nullableNumberArray, numberArray, textArray } from "./pg-arrays.js";

type Queryable = pg.Pool | pg.PoolClient;

/** A claimed delivery with what is needed to push it. */
export interface ClaimedDelivery {
  messagePk: number;
  groupId: string;
  claimEpoch: number;
  attempts: number;
  deliverLimit: number;
  expiresAt: Date;
  messageId: string;
  topic: string;
  messageType: string;
  /** The publishing group (header.groupId). */
  publisherGroupId: string;
  createdAt: Date;
  properties: { key: string; value: string }[] | null;
  snappy: boolean;
  bodyIsString: boolean;
  body: Buffer;
}

/**
 * Claim due deliveries for `groups`, at most `limits[i]` for groups[i], oldest first, skipping
 * rows other nodes hold locked. A row is due when its next attempt time passed, it has not
 * expired, and it is unclaimed, its claimer's lease ran out, or its claimer was declared dead
 * (dead_claimers, one lease long: this is how a dead node's deliveries are taken over at once)
 * and the row's lease was set before the declaration (lease_until <= until, the declaration time
 * plus one lease): a run wrongly declared dead (cut off from ZooKeeper only) keeps what it claims
 * or renews after it, so only what it held then can be delivered twice.
 * Each claim bumps claim_epoch. The update changes no indexed column, so it is a HOT update.
 * A claimed row whose message is gone (its day dropped by retention) comes back with a null
 * message_id: claimDueDeliveries ends it as expired. Every row carries taken_over: how many of
 * the claimed rows another claimer held (dead, or its lease ran out); each of those gets a
 * `taken_over` history row ($6: this node), since its earlier holder may have pushed it already
 * (a push is written with its outcome) and the consumer may now receive it a second time.
 */
const CLAIM_DUE_DELIVERIES = `
WITH dead AS MATERIALIZED (
  -- Read once per claim: whether any run is declared dead now (almost always false).
  SELECT EXISTS (SELECT 1 FROM dead_claimers WHERE until > $3) AS some_dead
), due AS (
  SELECT d.ctid, d.claimed_by, d.message_pk, d.group_id, d.lease_until < $3 AS lease_ran_out
    FROM unnest($1::text[], $2::int[]) AS g(group_id, lim)
    CROSS JOIN LATERAL (
      SELECT ctid, next_attempt_at, claimed_by, message_pk, group_id, lease_until FROM deliveries
       WHERE group_id = g.group_id AND next_attempt_at <= $3 AND expires_at > $3
         AND (claimed_by IS NULL OR lease_until < $7
              OR ((SELECT some_dead FROM dead) AND claimed_by <> $4
                  AND EXISTS (SELECT 1 FROM dead_claimers x
                               WHERE x.claimer = deliveries.claimed_by AND x.until > $3
                                 AND deliveries.lease_until <= x.until)))
       ORDER BY next_attempt_at
       LIMIT g.lim
       FOR UPDATE SKIP LOCKED
    ) d
), claimed AS (
  -- By ctid (the rows are locked, so it is stable): a TID scan whatever the table's size.
  UPDATE deliveries d SET claimed_by = $4, lease_until = $5, claim_epoch = d.claim_epoch + 1
   WHERE d.ctid = ANY (ARRAY(SELECT ctid FROM due))
  RETURNING d.message_pk, d.group_id, d.claim_epoch, d.attempts, d.deliver_limit, d.expires_at,
            d.message_stored_at, d.next_attempt_at
), taken AS MATERIALIZED (
  -- Only rows the update changed: a row another transaction changed between this statement's
  -- snapshot and its lock is locked in its new version, which the update (same snapshot) cannot
  -- see; it stays as it was, to be claimed next time, and was not taken over now. Tested by a
  -- hashed subplan (the CASE keeps it from becoming a join): as a join, statistics saying hardly
  -- any row is claimed made it a nested loop over both sides, 500 x 500 at a takeover (43 ms at
  -- 1,000,000 owed against 13 at 10,000).
  SELECT d.message_pk, d.group_id, d.claimed_by, d.lease_ran_out
    FROM due d
   WHERE d.claimed_by IS NOT NULL
     AND CASE WHEN (d.message_pk, d.group_id) IN (SELECT c.message_pk, c.group_id FROM claimed c)
              THEN true ELSE false END
), taken_rows AS (
  INSERT INTO message_events (message_pk, kind, at, group_id, node_id, detail)
  SELECT message_pk, 'taken_over', $3, group_id, $6,
         'from ' || claimed_by || CASE WHEN lease_ran_out THEN ' (its lease ran out)' ELSE ' (declared dead)' END
    FROM taken
)
SELECT c.message_pk, c.group_id, c.claim_epoch, c.attempts, c.deliver_limit,
       extract(epoch FROM c.expires_at)::float8 AS expires_at,
       m.message_id, m.topic, m.message_type, m.group_id AS publisher_group_id,
       extract(epoch FROM m.created_at)::float8 AS created_at,
       m.properties, m.snappy, m.body_is_string, m.body,
       (SELECT count(*) FROM taken)::int AS taken_over
  FROM claimed c
  -- LATERAL ... LIMIT 1 keeps this an index lookup per claimed row, pruned to the message's
  -- partition: planned as a join, the tiny estimate for the UPDATE's output made PostgreSQL hash
  -- a sequential scan of the whole day's messages.
  LEFT JOIN LATERAL (
    SELECT message_id, topic, message_type, group_id, created_at, properties, snappy, body_is_string, body
      FROM messages
     WHERE id = c.message_pk AND stored_at = c.message_stored_at
     LIMIT 1
  ) m ON true
 ORDER BY c.next_attempt_at`;

/**
 * The earliest next attempt after $2 among `groups` (delayed deliveries, scheduled retries): one
 * descent of deliveries_due_idx per group, so the claim loop can wake exactly then instead of at
 * its next poll.
 */
const NEXT_DUE_AFTER = `
SELECT min(d.next_attempt_at) AS at
  FROM unnest($1::text[]) AS g(group_id)
  CROSS JOIN LATERAL (
    SELECT next_attempt_at FROM deliveries
     WHERE group_id = g.group_id AND next_attempt_at > $2
     ORDER BY next_attempt_at
     LIMIT 1
  ) d`;

/** When the next delivery of `groups` falls due after `now` (see NEXT_DUE_AFTER); undefined: none. */
export async function nextDueAfter(
  db: Queryable,
  groups: readonly string[],
  now: Date,
): Promise<Date | undefined> {
  if (groups.length === 0) return undefined;
  const { rows } = await db.query<{ at: Date | null }>({
    name: "next_due_after",
    text: NEXT_DUE_AFTER,
    values: [groups, now],
  });
  return rows[0]?.at ?? undefined;
}

/** What claims took over from other claimers, added up by claimDueDeliveries when given. */
export interface ClaimTally {
  /** Claimed rows another claimer held (declared dead, or its lease ran out). */
  takenOver: number;
}

/** Claim due deliveries (see CLAIM_DUE_DELIVERIES). */
export async function claimDueDeliveries(
  db: Queryable,
  args: {
    groups: string[];
    limits: number[];
    now: Date;
    claimer: string;
    leaseUntil: Date;
    nodeId?: string;
    tally?: ClaimTally;
    /**
     * Another claimer's rows are taken when their lease ran out before this (default `now`). Just
     * after a shard's outage, the time it went down: leases that ran out during it could not be
     * renewed, and their holders' outcomes are still on the way.
     */
    leasesLapsedBefore?: Date;
  },
): Promise<ClaimedDelivery[]> {
  const { rows } = await db.query({
    // Named: planned once per connection (a generic plan, BROKER_POOL_SETTINGS: nothing in it
    // depends on the values).
    name: "claim_due_deliveries",
    text: CLAIM_DUE_DELIVERIES,
    values: [
      args.groups,
      args.limits,
      args.now,
      args.claimer,
      args.leaseUntil,
      args.nodeId ?? args.claimer,
      args.leasesLapsedBefore ?? args.now,
    ],
  });
  if (args.tally !== undefined && rows.length > 0) args.tally.takenOver += rows[0].taken_over;
  const claimed: ClaimedDelivery[] = [];
  const orphans: { messagePk: number; groupId: string; claimEpoch: number; attempts: number }[] = [];
  for (const r of rows) {
    if (r.message_id === null) {
      orphans.push({
        messagePk: r.message_pk,
        groupId: r.group_id,
        claimEpoch: r.claim_epoch,
        attempts: r.attempts,
      });
      continue;
    }
    claimed.push({
      messagePk: r.message_pk,
      groupId: r.group_id,
      claimEpoch: r.claim_epoch,
      attempts: r.attempts,
      deliverLimit: r.deliver_limit,
      // Epoch seconds: a timestamp's text form costs more to parse than the rest of the row.
      expiresAt: new Date(r.expires_at * 1000),
      messageId: r.message_id,
      topic: r.topic,
      messageType: r.message_type,
      publisherGroupId: r.publisher_group_id,
      createdAt: new Date(r.created_at * 1000),
      properties: r.properties,
      snappy: r.snappy,
      bodyIsString: r.body_is_string,
      body: r.body,
    });
  }
  if (orphans.length > 0) await expireOrphanedDeliveries(db, orphans, args.now, args.nodeId ?? args.claimer);
  return claimed;
}

/**
 * End deliveries whose message is no longer stored (retention dropped its day while a replay or
 * re-drive still owed it): deleted, fenced by the claim epoch, with an `expired` row saying why.
 */
async function expireOrphanedDeliveries(
  db: Queryable,
  items: readonly { messagePk: number; groupId: string; claimEpoch: number; attempts: number }[],
  now: Date,
  nodeId: string,
): Promise<number> {
  const sorted = [...items].sort(byDeliveryKey);
  return inOneTransaction(db, async (c) => {
    const ctids = lockedCtids(await lockByKey(c, sorted));
    if (ctids.length === 0) return 0;
    const { rowCount } = await c.query({
      text: `WITH gone AS (
               DELETE FROM deliveries d WHERE d.ctid = ANY ($1::text[]::tid[])
               RETURNING d.message_pk, d.group_id, d.attempts)
             INSERT INTO message_events (message_pk, kind, at, group_id, node_id, attempt, detail)
             SELECT message_pk, 'expired', $2, group_id, $3, attempts, 'message no longer stored (dropped by retention)'
               FROM gone`,
      values: [textArray(ctids), now, nodeId],
    });
    return rowCount ?? 0;
  });
}

/** A deliveries row found and locked by lockByKey. */
interface LockedDelivery {
  /** Its tuple id (text): the statement that changes it goes by it (a TID scan). */
  ctid: string;
  messageStoredAt: Date;
}

/**
 * Find and lock (FOR UPDATE) the deliveries row of each key, in the keys' order: one lookup per
 * key, each a subquery PostgreSQL cannot turn into a join (a LATERAL one that locks), so it can
 * only go by the primary key whatever the statistics say. deliveries is a queue table, nearly
 * empty whenever consumers keep up, and that is when autovacuum analyses it: a few rows over
 * thousands of pages. On those statistics the joins of acks, renewals and releases with their
 * batch walked the whole table (a nested loop comparing 20,770 rows with 321 keys: 2 s; hash joins
 * over every row; with plain index scans off, a sequential scan materialised for 2,000 keys), acks
 * fell behind, the rows held grew and each next plan was worse: steady load at 2 x 2,000 msg/s
 * went wrong ~150 s in, every time. Rows that no longer match (another claim's epoch, another
 * claimer) are not found; a row updated while its lookup waited for the lock is judged on its new
 * version. Run in the transaction of the statement that then changes the rows by ctid (a TID
 * scan, whatever the statistics): that statement's snapshot is newer than the locks, so it sees
 * the very versions locked (one statement's own snapshot would miss a version updated while it
 * waited). Answers one entry per key.
 */
async function lockByKey(
  c: Queryable,
  keys: readonly { messagePk: number; groupId: string; claimEpoch?: number }[],
  options: { claimer?: string; skipLocked?: boolean } = {},
): Promise<(LockedDelivery | undefined)[]> {
  const epochs = keys.some((k) => k.claimEpoch !== undefined);
  const claimer = options.claimer !== undefined;
  const { rows } = await c.query<{ i: number; ctid: string; message_stored_at: Date }>({
    name: `lock_deliveries${epochs ? "_epoch" : ""}${claimer ? "_claimer" : ""}${options.skipLocked ? "_skip" : ""}`,
    // group_id and claimed_by compared as expressions no index has: given the group, the planner
    // took deliveries_due_idx (group_id first) on a queue table's statistics, and each lookup
    // read the group's every row.
    text: `SELECT a.i::int AS i, x.ctid::text AS ctid, x.message_stored_at
             FROM unnest($1::bigint[], $2::text[], $3::int[]) WITH ORDINALITY AS a(message_pk, group_id, claim_epoch, i)
            CROSS JOIN LATERAL (
              SELECT d.ctid, d.message_stored_at FROM deliveries d
               WHERE d.message_pk = a.message_pk AND d.group_id || '' = a.group_id
                 ${epochs ? "AND d.claim_epoch = a.claim_epoch" : ""}
                 ${claimer ? "AND d.claimed_by || '' = $4" : ""}
                 FOR UPDATE OF d${options.skipLocked ? " SKIP LOCKED" : ""}
            ) x`,
    values: [
      numberArray(keys.map((k) => k.messagePk)),
      textArray(keys.map((k) => k.groupId)),
      epochs ? numberArray(keys.map((k) => k.claimEpoch ?? -1)) : null,
      ...(claimer ? [options.claimer] : []),
    ],
  });
  const locked = new Array<LockedDelivery | undefined>(keys.length);
  for (const r of rows) locked[r.i - 1] = { ctid: r.ctid, messageStoredAt: r.message_stored_at };
  return locked;
}

/** The ctids lockByKey locked, each once (two keys of one delivery in a batch lock one row). */
function lockedCtids(locked: readonly (LockedDelivery | undefined)[]): string[] {
  return [...new Set(locked.flatMap((r) => (r === undefined ? [] : [r.ctid])))];
}

/** Order of a batch's rows by (messagePk, groupId): every batch locks deliveries in this order. */
function byDeliveryKey(
  a: { messagePk: number; groupId: string },
  b: { messagePk: number; groupId: string },
): number {
  if (a.messagePk !== b.messagePk) return a.messagePk - b.messagePk;
  return a.groupId < b.groupId ? -1 : a.groupId > b.groupId ? 1 : 0;
}

/** Added to the reason of a failed push whose claim no longer held the delivery. */
export const NACK_AFTER_END = " (this claim no longer held the delivery: nothing changed)";

/** History detail of an ack that came after its delivery had ended dead-lettered or expired. */
export const ACK_AFTER_END =
  "acked after the delivery had ended (dead-lettered or expired): the group processed the message";

/** History detail of a push whose answer came after its delivery had ended. */
export const PUSH_AFTER_END =
  "answered after the delivery had ended (taken over or redelivered): received more than once";

/** A consumer's DELIVER_ACK true (or an ack of an earlier claim: it still ends the delivery). */
export interface AckRecord {
  messagePk: number;
  groupId: string;
  attempt: number;
  /**
   * When the acked push went out; null when its `delivered` row is already written (a late ack
   * of a push that timed out: the nack wrote it).
   */
  pushedAt: Date | null;
  ackedAt: Date;
}

/**
 * Acks: find each one's delivery by a lookup of its own (LATERAL ... LIMIT 1, which PostgreSQL
 * cannot turn into a join: the primary key by message_pk is its only path, whatever the
 * statistics of this queue table say; see lockByKey), delete those found by ctid (a TID scan) and
 * append their history; an ack whose delivery is not there writes only its push (and is given to
 * ACK_AFTER_END_SQL). An ack within ACK_WITH_PUSH_WINDOW_SECONDS of its push is one `acked` row
 * carrying the push time (delivered_at): the `delivered` state change is kept, in half the rows
 * and index entries. A slower one gets its own `delivered` row. Answers the ordinals (1-based) of
 * the acks that ended a delivery and of those that found none; an ack in neither found a row
 * another transaction changed after this statement's snapshot (the delete, rechecking the new
 * version, let it be): ackDeliveries runs it again, and the next statement sees the new version.
 */
export const ACK_DELIVERIES = `
WITH found AS (
  SELECT a.*, x.ctid
    FROM unnest($1::bigint[], $2::text[], $3::int[], $4::float8[], $5::float8[]) WITH ORDINALITY
      AS a(message_pk, group_id, attempt, pushed_at, acked_at, i)
    LEFT JOIN LATERAL (
      SELECT d.ctid FROM deliveries d
       WHERE d.message_pk = a.message_pk AND d.group_id || '' = a.group_id
       LIMIT 1
    ) x ON true
), deleted AS (
  -- By ctid, the array alone: a TID scan of the batch's tuples whatever the session's planner
  -- settings (with sequential scans allowed, a join with found was a hash join over the whole
  -- table) and no join at all. Joined with found by ctid, the generic plan looked each tuple up
  -- from its ack and then searched the whole array for it: n x n (67 against 31 ms for 2,000).
  DELETE FROM deliveries d WHERE d.ctid = ANY (ARRAY(SELECT ctid FROM found WHERE ctid IS NOT NULL))
  RETURNING d.message_pk, d.group_id
), gone AS MATERIALIZED (
  -- The acks whose row was deleted, by a hashed subplan (the CASE keeps it from becoming a join,
  -- which on a few rows' estimate is a nested loop over both sides: see CLAIM_DUE_DELIVERIES).
  SELECT f.i, f.message_pk, f.group_id, f.attempt, to_timestamp(f.pushed_at) AS pushed_at,
         to_timestamp(f.acked_at) AS acked_at,
         coalesce(f.acked_at - f.pushed_at <= ${ACK_WITH_PUSH_WINDOW_SECONDS}, false) AS merged
    FROM found f
   WHERE f.ctid IS NOT NULL
     AND CASE WHEN (f.message_pk, f.group_id) IN (SELECT x.message_pk, x.group_id FROM deleted x)
              THEN true ELSE false END
), ev AS (
  INSERT INTO message_events (message_pk, kind, at, group_id, node_id, attempt, delivered_at, detail)
  SELECT message_pk, 'delivered'::message_event_kind, pushed_at, group_id, $6, attempt, NULL, NULL
    FROM gone WHERE NOT merged AND pushed_at IS NOT NULL
  UNION ALL
  SELECT message_pk, 'acked'::message_event_kind, acked_at, group_id, $6, attempt,
         CASE WHEN merged THEN pushed_at END, NULL
    FROM gone
  UNION ALL
  -- The push of an ack that ended nothing (the delivery had ended: acked after a takeover or a
  -- redelivery) still happened: its consumer received the message once more.
  SELECT message_pk, 'delivered'::message_event_kind, to_timestamp(pushed_at), group_id, $6, attempt, NULL,
         '${PUSH_AFTER_END}'
    FROM found
   WHERE ctid IS NULL AND pushed_at IS NOT NULL
)
SELECT coalesce((SELECT array_agg(i::int) FROM gone), '{}') AS ended,
       coalesce((SELECT array_agg(i::int) FROM found WHERE ctid IS NULL), '{}') AS missed`;

/**
 * Times ackDeliveries runs ACK_DELIVERIES again for acks whose row another transaction changed
 * meanwhile (a lease renewal, a takeover): each run sees the versions committed before it.
 */
const ACK_RACE_ROUNDS = 20;

/**
 * Acks that ended no delivery ($1-$4), asked after ACK_DELIVERIES in a statement of its own: the
 * ones whose delivery had ended dead-lettered or expired (a late ack of a push that timed out at the
 * deliver limit) get an `acked` row saying so and leave the group's dead letters: the group did
 * process the message (a re-drive would run it again). A statement of its own, so that a
 * dead-lettering that committed while the ack waited for the same delivery's row is seen
 * (ACK_DELIVERIES' snapshot is older), and so that the acks that did end their delivery, nearly
 * all, never probe the history.
 * - Once per message and group: two late acks of one (two pushes answered after a long handler)
 *   are one; and the dead letter's delete is the arbiter between statements running at once (two
 *   nodes' batches): only the one that deleted it writes the row (an expiry has no dead letter:
 *   deduplicated within a statement only). Run again (a retry), it finds the `acked` row it wrote
 *   as the latest ending and writes nothing.
 * - The row is after the ending it follows: an ack that arrived before the delivery ended (its
 *   write waited) is recorded 1 us after the ending, not at its arrival, so the history's latest
 *   ending is this ack (as explain and the dead-letter listings read it).
 */
export const ACK_AFTER_END_SQL = `
WITH input AS (
  SELECT DISTINCT ON (message_pk, group_id) *
    FROM unnest($1::bigint[], $2::text[], $3::int[], $4::float8[]) AS a(message_pk, group_id, attempt, acked_at)
   ORDER BY message_pk, group_id, acked_at
), judged AS (
  SELECT a.*, last.kind, last.at AS ended_at FROM input a
   CROSS JOIN LATERAL (
     SELECT ev.kind, ev.at
       FROM (SELECT e.kind, e.at, e.group_id FROM message_events e WHERE e.message_pk = a.message_pk OFFSET 0) ev
      WHERE ev.group_id = a.group_id AND ev.kind IN ('acked', 'dead_lettered', 'expired')
      ORDER BY ev.at DESC LIMIT 1
   ) last
  WHERE last.kind IN ('dead_lettered', 'expired')
), undead AS (
  DELETE FROM dead_letters x
   WHERE x.message_pk = ANY (ARRAY(SELECT message_pk FROM judged))
     AND EXISTS (SELECT 1 FROM judged j WHERE j.message_pk = x.message_pk AND j.group_id = x.group_id)
  RETURNING x.message_pk, x.group_id
)
INSERT INTO message_events (message_pk, kind, at, group_id, node_id, attempt, delivered_at, detail)
SELECT j.message_pk, 'acked'::message_event_kind,
       greatest(to_timestamp(j.acked_at), j.ended_at + interval '1 microsecond'), j.group_id, $5, j.attempt, NULL,
       '${ACK_AFTER_END}'
  FROM judged j
 WHERE j.kind = 'expired'
    OR EXISTS (SELECT 1 FROM undead u WHERE u.message_pk = j.message_pk AND u.group_id = j.group_id)
RETURNING message_pk::text || ' ' || group_id AS k`;

/**
 * Record the acks of deliveries that had ended (see ACK_AFTER_END_SQL); safe to run again.
 * Returns the deliveryKey of each ack it recorded.
 */
export async function ackAfterEnd(
  db: Queryable,
  acks: readonly AckRecord[],
  nodeId: string,
): Promise<Set<string>> {
  if (acks.length === 0) return new Set();
  const { rows } = await db.query<{ k: string }>({
    name: "ack_after_end",
    text: ACK_AFTER_END_SQL,
    values: [
      numberArray(acks.map((a) => a.messagePk)),
      textArray(acks.map((a) => a.groupId)),
      numberArray(acks.map((a) => a.attempt)),
      numberArray(acks.map((a) => a.ackedAt.getTime() / 1000)),
      nodeId,
    ],
  });
  return new Set(rows.map((r) => r.k));
}

/** What a batch of acks did: how many deliveries ended, and which late acks ended one. */
export interface AckBatchResult {
  ended: number;
  /** `${messagePk} ${groupId}` of each ack with pushedAt null (a late ack) that ended a delivery. */
  lateEnded: ReadonlySet<string>;
  /**
   * Why ACK_AFTER_END_SQL failed, when it did (the acks themselves are written), and the acks it
   * was given: the caller runs them again with ackAfterEnd. Not thrown: a retry of the whole
   * batch would record the acks' pushes a second time, as answered after their delivery had ended.
   */
  afterEndError?: unknown;
  afterEnd?: readonly AckRecord[];
  /** deliveryKey of each ack of an ended delivery recorded by ACK_AFTER_END_SQL (when any). */
  recordedAfterEnd?: ReadonlySet<string>;
  /**
   * Acks not decided because a later round failed (its statement's error, or rows changed by
   * others ACK_RACE_ROUNDS times in a row) after earlier rounds had committed: the caller retries
   * these alone. Not thrown: a retry of the whole batch would record the acks that did end their
   * delivery a second time, as pushes answered after the end.
   */
  unsettled?: readonly AckRecord[];
  unsettledError?: unknown;
}

/** The key of an ack in AckBatchResult.lateEnded. */
export const deliveryKey = (a: { messagePk: number; groupId: string }): string =>
  `${a.messagePk} ${a.groupId}`;

/** Apply a batch of acks (see ACK_DELIVERIES). */
export async function ackDeliveries(
  db: Queryable,
  batch: readonly AckRecord[],
  nodeId: string,
): Promise<AckBatchResult> {
  if (batch.length === 0) return { ended: 0, lateEnded: new Set() };
  // In key order: two batches deleting the same rows (this node's and another's, or acks and
  // nacks) lock them in the same order instead of deadlocking. Two acks of one delivery (two
  // pushes answered): the first ends it, the other is not written (as a join of the batch did).
  const seen = new Set<string>();
  let pending = [...batch].sort(byDeliveryKey).filter((a) => {
    const k = deliveryKey(a);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  const ended: AckRecord[] = [];
  const missed: AckRecord[] = [];
  let unsettledError: unknown;
  for (let round = 0; pending.length > 0; round++) {
    if (round === ACK_RACE_ROUNDS) {
      unsettledError = new Error(
        `ack batch: ${pending.length} deliveries changed by others ${round} times in a row`,
      );
      break;
    }
    let rows: { ended: number[]; missed: number[] }[];
    try {
      ({ rows } = await db.query<{ ended: number[]; missed: number[] }>({
        // Named: parsed and planned once per connection (tens of ack batches a second).
        name: "ack_deliveries",
        text: ACK_DELIVERIES,
        values: [
          numberArray(pending.map((a) => a.messagePk)),
          textArray(pending.map((a) => a.groupId)),
          numberArray(pending.map((a) => a.attempt)),
          // Epoch seconds: formatting Dates for array parameters costs more than the statement.
          nullableNumberArray(pending.map((a) => (a.pushedAt === null ? null : a.pushedAt.getTime() / 1000))),
          numberArray(pending.map((a) => a.ackedAt.getTime() / 1000)),
          nodeId,
        ],
      }));
    } catch (err) {
      // The first round committed nothing: the whole batch fails and is retried as it came.
      if (round === 0) throw err;
      unsettledError = err;
      break;
    }
    // No row: a plan capture (statement-catalog) answers none.
    const r = rows[0];
    if (r === undefined) break;
    const done = new Set<number>();
    for (const i of r.ended) {
      ended.push(pending[i - 1]!);
      done.add(i);
    }
    for (const i of r.missed) {
      missed.push(pending[i - 1]!);
      done.add(i);
    }
    pending = pending.filter((_, i) => !done.has(i + 1));
  }
  const result: AckBatchResult = {
    ended: ended.length,
    lateEnded: new Set(ended.filter((a) => a.pushedAt === null).map(deliveryKey)),
  };
  if (unsettledError !== undefined) {
    result.unsettled = pending;
    result.unsettledError = unsettledError;
  }
  if (missed.length === 0) return result;
  try {
    const recorded = await ackAfterEnd(db, missed, nodeId);
    if (recorded.size > 0) result.recordedAfterEnd = recorded;
  } catch (err) {
    result.afterEndError = err;
    result.afterEnd = missed;
  }
  return result;
}

/** A failed push (DELIVER_ACK false or no answer in time). */
export interface NackRecord {
  messagePk: number;
  groupId: string;
  /** The epoch of the claim the push was made under: a stale one changes nothing. */
  claimEpoch: number;
  /** Attempt number of this push (1 = first). */
  attempt: number;
  pushedAt: Date;
  failedAt: Date;
  /** When to try again; ignored when deadLetter. */
  nextAttemptAt: Date;
  /** deliverLimit reached: end the delivery in the dead-letter state. */
  deadLetter: boolean;
  reason: string;
}

/**
 * Nacks, once lockByKey has locked the deliveries their claims still hold (`hit`): reschedule
 * (attempts, next_attempt_at, claim released) or, at the deliver limit, delete the delivery and
 * add it to the group's dead letters; append `delivered` + `nacked` (+ `dead_lettered`) rows for
 * every nack of the batch. The rows are changed by ctid (a TID scan each), so no statistics can
 * change the plan.
 */
const NACK_DELIVERIES = `
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::timestamptz[], $6::timestamptz[],
                       $7::timestamptz[], $8::bool[], $9::text[], $10::bool[], $11::timestamptz[])
    AS n(ctid, message_pk, group_id, attempt, pushed_at, failed_at, next_attempt_at, dead, reason, hit, message_stored_at)
), retry_values AS (
  SELECT jsonb_object_agg(ctid, jsonb_build_array(attempt, next_attempt_at)) AS m FROM input WHERE hit AND NOT dead
), retried AS (
  -- By ctid, the array alone (a TID scan, as the ack's delete), each row's values looked up by its
  -- ctid in one jsonb object built once: joined with input by ctid, the generic plan looked each
  -- tuple up from its nack and then searched the whole array for it (n x n).
  UPDATE deliveries d
     SET attempts = ((SELECT m FROM retry_values) -> d.ctid::text ->> 0)::int,
         next_attempt_at = ((SELECT m FROM retry_values) -> d.ctid::text ->> 1)::timestamptz,
         claimed_by = NULL, lease_until = NULL
   WHERE d.ctid = ANY (ARRAY(SELECT ctid::tid FROM input WHERE hit AND NOT dead))
  RETURNING 1
), dead AS (
  DELETE FROM deliveries d WHERE d.ctid = ANY (ARRAY(SELECT ctid::tid FROM input WHERE hit AND dead))
  RETURNING 1
), buried AS (
  -- The group's dead letters (migration 0013): what listings and counts read. The message by a
  -- lookup per row (LATERAL ... LIMIT 1), pruned to its partition, as the claim reads it.
  INSERT INTO dead_letters (message_pk, group_id, message_stored_at, dead_at, message_id, topic, message_type,
                            attempt, last_error)
  SELECT x.message_pk, x.group_id, x.message_stored_at, x.failed_at + interval '1 microsecond', m.message_id,
         m.topic, m.message_type, x.attempt, x.reason
    FROM input x
    CROSS JOIN LATERAL (
      SELECT message_id, topic, message_type FROM messages
       WHERE id = x.message_pk AND stored_at = x.message_stored_at LIMIT 1
    ) m
   WHERE x.hit AND x.dead
  ON CONFLICT (message_pk, group_id) DO UPDATE
     SET dead_at = excluded.dead_at, attempt = excluded.attempt, last_error = excluded.last_error
)
, ev AS (
  -- Every push is written, and its failure: one this claim no longer held (taken over, or ended
  -- by an ack written first) changed nothing, and says so.
  INSERT INTO message_events (message_pk, kind, at, group_id, node_id, attempt, detail)
SELECT message_pk, 'delivered'::message_event_kind, pushed_at, group_id, $12, attempt, NULL FROM input
UNION ALL
SELECT message_pk, 'nacked'::message_event_kind, failed_at, group_id, $12, attempt, reason FROM input WHERE hit
UNION ALL
SELECT message_pk, 'nacked'::message_event_kind, failed_at, group_id, $12, attempt, reason || '${NACK_AFTER_END}'
  FROM input WHERE NOT hit
UNION ALL
SELECT message_pk, 'dead_lettered'::message_event_kind, failed_at + interval '1 microsecond', group_id, $12, attempt,
       'deliver limit reached' FROM input WHERE hit AND dead
  RETURNING 1
)
SELECT (SELECT count(*) FROM ev)::int AS events,
       ((SELECT count(*) FROM retried) + (SELECT count(*) FROM dead))::int AS changed`;

/** What a batch of nacks wrote. */
export interface NackResult {
  /** History rows written. */
  events: number;
  /**
   * deliveryKey of each nack that dead-lettered its delivery: one at the deliver limit whose
   * delivery had ended meanwhile (acked first, taken over) dead-lettered nothing.
   */
  deadLettered: Set<string>;
}

/** Apply a batch of nacks (lockByKey, then NACK_DELIVERIES). */
export async function nackDeliveries(
  db: Queryable,
  batch: readonly NackRecord[],
  nodeId: string,
): Promise<NackResult> {
  if (batch.length === 0) return { events: 0, deadLettered: new Set() };
  const nacks = [...batch].sort(byDeliveryKey);
  return inOneTransaction(db, async (c) => {
    const locked = await lockByKey(c, nacks);
    // Two nacks of one delivery in a batch: the first changes it, the other did nothing.
    const seen = new Set<string>();
    const hit = nacks.map((_, i) => {
      const row = locked[i];
      if (row === undefined || seen.has(row.ctid)) return false;
      seen.add(row.ctid);
      return true;
    });
    const { rows } = await c.query<{ events: number; changed: number }>({
      name: "nack_deliveries",
      text: NACK_DELIVERIES,
      values: [
        nacks.map((_, i) => (hit[i] ? locked[i]!.ctid : null)),
        nacks.map((n) => n.messagePk),
        nacks.map((n) => n.groupId),
        nacks.map((n) => n.attempt),
        nacks.map((n) => n.pushedAt),
        nacks.map((n) => n.failedAt),
        nacks.map((n) => n.nextAttemptAt),
        nacks.map((n) => n.deadLetter),
        nacks.map((n) => n.reason),
        hit,
        nacks.map((_, i) => (hit[i] ? locked[i]!.messageStoredAt : null)),
        nodeId,
      ],
    });
    // No row: a plan capture (statement-catalog) answers none.
    const r = rows[0];
    if (r === undefined) return { events: 0, deadLettered: new Set() };
    const changed = hit.filter(Boolean).length;
    // The rows are locked: each is there to change. Anything else is a defect, not a race.
    if (r.changed !== changed)
      throw new Error(`nack batch: ${changed} deliveries locked, ${r.changed} changed`);
    return {
      events: r.events,
      deadLettered: new Set(nacks.filter((n, i) => hit[i] && n.deadLetter).map(deliveryKey)),
    };
  });
}

/** Deliveries held back locally (flow control, shutdown): release the claim, keep the attempts. */
export async function releaseDeliveries(
  db: Queryable,
  items: readonly { messagePk: number; groupId: string; claimEpoch: number }[],
): Promise<number> {
  if (items.length === 0) return 0;
  // In the acks' and nacks' lock order: unsorted, a release and an outcome batch of another
  // connection could lock the same rows in opposite orders (deadlocks seen under load).
  items = [...items].sort(byDeliveryKey);
  return inOneTransaction(db, async (c) => {
    const ctids = lockedCtids(await lockByKey(c, items));
    if (ctids.length === 0) return 0;
    const { rowCount } = await c.query({
      name: "release_deliveries",
      text: `UPDATE deliveries d SET claimed_by = NULL, lease_until = NULL WHERE d.ctid = ANY ($1::text[]::tid[])`,
      values: [textArray(ctids)],
    });
    return rowCount ?? 0;
  });
}

/**
 * Renew the lease of the deliveries this node holds in memory (queued, in flight, or awaiting
 * their outcome write). Only rows still claimed by `claimer` under the same epoch are renewed, so
 * a row another node took over is left alone.
 */
export async function renewLeases(
  db: Queryable,
  claimer: string,
  items: readonly { messagePk: number; groupId: string; claimEpoch: number }[],
  leaseUntil: Date,
): Promise<number> {
  return (await renewHeldLeases(db, claimer, items, leaseUntil)).size;
}

/**
 * Held deliveries a lease renewal statement renews at most: a node holding 40,000 (a backlog
 * claimed after a restart) renewed them in one UPDATE that, under load, ran to its statement
 * timeout while acks and outcome batches waited on its row locks, and leases lapsed.
 */
export const RENEW_BATCH = 1000;

/**
 * renewLeases, answering which rows were renewed (their deliveryKey): the others are not ours any
 * more. In statements of RENEW_BATCH rows, each its own transaction: a failed one (a deadlock)
 * costs only its rows' renewal; with `onBatchError` the others go on and it hears of each
 * failure, without it the first failure is thrown.
 */
export async function renewHeldLeases(
  db: Queryable,
  claimer: string,
  items: readonly { messagePk: number; groupId: string; claimEpoch: number }[],
  leaseUntil: Date,
  onBatchError?: (err: unknown) => void,
): Promise<Set<string>> {
  const renewed = new Set<string>();
  const sorted = [...items].sort(byDeliveryKey);
  for (let i = 0; i < sorted.length; i += RENEW_BATCH) {
    const batch = sorted.slice(i, i + RENEW_BATCH);
    try {
      // A row locked right now is skipped, never waited for: its lock holder is an outcome batch
      // ending or releasing it (nothing else locks a claimed row), so its lease no longer matters,
      // and the next renewal finds it if that batch rolls back. Waiting, a renewal deadlocked with
      // ack batches whenever a hash join made either lock in another order than its input's.
      const rows = await inOneTransaction(db, async (c) => {
        const locked = await lockByKey(c, batch, { claimer, skipLocked: true });
        const ctids = lockedCtids(locked);
        if (ctids.length === 0) return [];
        const { rows } = await c.query<{ k: string }>({
          name: "renew_deliveries",
          text: `UPDATE deliveries d SET lease_until = $2 WHERE d.ctid = ANY ($1::text[]::tid[])
                 RETURNING d.message_pk::text || ' ' || d.group_id AS k`,
          values: [textArray(ctids), leaseUntil],
        });
        return rows;
      });
      for (const r of rows) renewed.add(r.k);
    } catch (err) {
      if (onBatchError === undefined) throw err;
      onBatchError(err);
    }
  }
  return renewed;
}

/** Rows one background statement touches at most; callers loop until a batch comes back short. */
export const BACKGROUND_BATCH = 5000;

/** The smallest string above every string that starts with `prefix` (C order; `prefix` is not empty). */
export function prefixUpperBound(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/**
 * Expiry sweep, one batch: delete up to $3 deliveries whose message expired, oldest expiry first
 * (the expires_at index), with an `expired` row each. Locked rows are skipped (a node is acking
 * them right now) and found by the next sweep.
 */
export const EXPIRE_DELIVERIES = `
WITH v AS (
  SELECT ctid FROM deliveries WHERE expires_at <= $1 ORDER BY expires_at LIMIT $3 FOR UPDATE SKIP LOCKED
), gone AS (
  DELETE FROM deliveries d WHERE d.ctid = ANY (ARRAY(SELECT ctid FROM v))
  RETURNING d.message_pk, d.group_id, d.attempts
)
INSERT INTO message_events (message_pk, kind, at, group_id, node_id, attempt, detail)
SELECT message_pk, 'expired', $1, group_id, $2, attempts, 'expiredTime passed' FROM gone`;

/** Expiry sweep: one batch of at most `limit` (see EXPIRE_DELIVERIES); returns how many ended. */
export async function expireDeliveries(
  db: Queryable,
  now: Date,
  nodeId: string,
  limit: number,
): Promise<number> {
  const { rowCount } = await db.query({ text: EXPIRE_DELIVERIES, values: [now, nodeId, limit] });
  return rowCount ?? 0;
}

/**
 * Re-drive: give $2 (a group) a fresh delivery of each message of $1 (messageIds) whose delivery
 * to it ended dead-lettered (or expired), with a `redriven` row each; returns
 * the messageIds it re-drove. A range re-drive takes a page at a time (one transaction and flush
 * per message made it a few hundred a second). How the last delivery ended is read from the
 * message's own events (message_events_message_idx, from the day it was stored): any plan that
 * could use message_events_group_idx walked the group's history backwards looking for this one
 * message, with the statistics autovacuum keeps (it analyses the day partitions, never the
 * partitioned parent) or with none at all: 1-4 ms a message at 6,000-44,000 events of the
 * group, hours for a range re-drive of 50,000.
 */
export const REDRIVE_DELIVERIES = `WITH m AS (
  SELECT m.id, m.stored_at, m.topic, m.deliver_limit, i.message_id
    FROM (SELECT DISTINCT unnest($1::text[]) AS message_id) u
    JOIN message_ids i ON i.message_id = u.message_id
    JOIN messages m ON m.id = i.message_pk AND m.stored_at = i.stored_at
), ended AS (
  -- How its last delivery to the group ended: acked, or dead (an ack before a replay
  -- that was then dead-lettered does not make it acked).
  SELECT m.*
    FROM m CROSS JOIN LATERAL (
      SELECT ev.kind IN ('dead_lettered', 'expired') AS dead
        FROM (
          -- The message's own events (a few), by message_events_message_idx: OFFSET 0 keeps the
          -- group and kind conditions out, so no plan can walk the group's index instead.
          SELECT e.kind, e.at, e.group_id FROM message_events e
           WHERE e.message_pk = m.id AND e.at >= m.stored_at
          OFFSET 0
        ) ev
       WHERE ev.group_id = $2 AND ev.kind IN ('dead_lettered', 'expired', 'acked')
       ORDER BY ev.at DESC LIMIT 1
    ) last
   WHERE last.dead
), ins AS (
  INSERT INTO deliveries (message_pk, group_id, message_stored_at, topic, next_attempt_at, expires_at,
                          deliver_limit)
  SELECT id, $2, stored_at, topic, $3, $4, deliver_limit FROM ended
  ON CONFLICT DO NOTHING
  RETURNING message_pk
), ev AS (
  INSERT INTO message_events (message_pk, kind, at, group_id, node_id, detail)
  SELECT message_pk, 'redriven', $3, $2, $5, $6 FROM ins
), wake AS (SELECT pg_notify('kiteq_due', '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_row)
SELECT ended.message_id, ins.message_pk, (SELECT count(*) FROM wake) AS woke
  FROM ins JOIN ended ON ended.id = ins.message_pk`;

/**
 * The dead letters of group $2 among messages $1 (the pks a re-drive or replay just gave a fresh
 * delivery): no longer dead. A statement of its own after theirs, in their transaction: a
 * dead-lettering that committed while their insert waited for it (the same delivery's row) is
 * visible only to a later statement's snapshot, and a DELETE in theirs left its row for good.
 */
export const FORGET_DEAD_LETTERS = `
DELETE FROM dead_letters WHERE message_pk = ANY ($1::bigint[]) AND group_id = $2`;

/** Whether `groupId` owes a delivery of the message `messageId` now (a row in deliveries). */
export async function isOwedTo(db: Queryable, messageId: string, groupId: string): Promise<boolean> {
  // A lookup per message id (LATERAL): the group compared as an expression no index has, so it
  // can only go by the primary key (see lockByKey).
  const { rowCount } = await db.query(
    `SELECT 1 FROM message_ids i
      CROSS JOIN LATERAL (
        SELECT 1 FROM deliveries d WHERE d.message_pk = i.message_pk AND d.group_id || '' = $2 LIMIT 1
      ) d
      WHERE i.message_id = $1 LIMIT 1`,
    [messageId, groupId],
  );
  return (rowCount ?? 0) > 0;
}

/** A dry run's batch: `db` is a pool (replayRange checks), its transaction rolled back. */
function inRolledBackTransaction<T>(db: Queryable, fn: (c: Queryable) => Promise<T>): Promise<T> {
  return inTransaction(db as pg.Pool, fn, { rollback: true });
}

/** What a re-drive writes besides the messages (see REDRIVE_DELIVERIES). */
export interface RedriveArgs {
  groupId: string;
  now: Date;
  expiresAt: Date;
  nodeId: string;
  reason: string;
}

/**
 * Re-drive several messages in one transaction (see REDRIVE_DELIVERIES). Returns the messageIds
 * re-driven; the others are unknown, still owed, or their last delivery to the group was acked.
 */
export async function redriveDeliveries(
  db: Queryable,
  messageIds: readonly string[],
  args: RedriveArgs,
): Promise<Set<string>> {
  if (messageIds.length === 0) return new Set();
  // With their dead letters forgotten, in one transaction (see FORGET_DEAD_LETTERS).
  const rows = await inOneTransaction(db, async (c) => {
    const { rows } = await c.query<{ message_id: string; message_pk: number }>({
      text: REDRIVE_DELIVERIES,
      values: [messageIds, args.groupId, args.now, args.expiresAt, args.nodeId, args.reason],
    });
    if (rows.length > 0) {
      await c.query(FORGET_DEAD_LETTERS, [rows.map((r) => r.message_pk), args.groupId]);
    }
    return rows;
  });
  return new Set(rows.map((r) => r.message_id));
}

/**
 * Re-drive one message (see REDRIVE_DELIVERIES). Returns false when the message is unknown, still
 * owed, or its last delivery to the group was acked.
 */
export async function redriveDelivery(
  db: Queryable,
  args: RedriveArgs & { messageId: string },
): Promise<boolean> {
  return (await redriveDeliveries(db, [args.messageId], args)).size > 0;
}

/**
 * Deliveries still owed, per subscriber group (a metrics gauge): the sums kept by the triggers on
 * deliveries (migration 0004), so it costs the same for ten rows owed or ten million.
 */
export const COUNT_OWED_DELIVERIES = `
SELECT group_id, sum(owed)::int8 AS owed FROM owed_counts GROUP BY group_id HAVING sum(owed) <> 0`;

/** What each group is owed (see COUNT_OWED_DELIVERIES). */
export async function countOwedDeliveries(db: Queryable): Promise<Map<string, number>> {
  const { rows } = await db.query<{ group_id: string; owed: number }>(COUNT_OWED_DELIVERIES);
  return new Map(rows.map((r) => [r.group_id, r.owed]));
}

/**
 * Replay, one batch: of the messages stored in [$3, $4) with id above $9, the next $10 by id (the
 * id index of each day partition in the range); those of `topic` that were committed, of a message
 * type in $11 (NULL: every type), get a fresh delivery to the group with a `redriven` row each.
 * Which types the group's bindings match is decided by the caller, with the broker's own matcher
 * (Go's regexp syntax, not PostgreSQL's): a type of the batch not judged yet (neither in $11 nor in
 * $12, the types judged not to match) is returned in `unjudged`, and then nothing of the batch is
 * written, so the caller judges it and runs the same batch again. Returns the last id scanned, how
 * many were scanned, how many deliveries were created and the unjudged types.
 */
export const REPLAY_BATCH = `
WITH scanned AS (
  SELECT m.id, m.stored_at, m.topic, m.message_type, m.deliver_limit, m."commit", m.properties FROM messages m
   WHERE m.stored_at >= $3 AND m.stored_at < $4 AND m.id > $9
   ORDER BY m.id
   LIMIT $10
), unjudged AS (
  SELECT DISTINCT s.message_type FROM scanned s
   WHERE $11::text[] IS NOT NULL AND s.topic = $1
     AND NOT (s.message_type = ANY ($11::text[])) AND NOT (s.message_type = ANY ($12::text[]))
), src AS (
  SELECT s.* FROM scanned s
   WHERE s.topic = $1
     AND ($11::text[] IS NULL OR s.message_type = ANY ($11::text[]))
     AND NOT EXISTS (SELECT 1 FROM unjudged)
     AND (s."commit" OR EXISTS (SELECT 1 FROM message_events e
                                 WHERE e.message_pk = s.id AND e.at >= s.stored_at AND e.kind = 'committed'))
), ins AS (
  INSERT INTO deliveries (message_pk, group_id, message_stored_at, topic, next_attempt_at, expires_at, deliver_limit)
  -- A delayed message (kiteq.deliverAt still ahead) stays delayed: due at that time, not now.
  SELECT id, $2, stored_at, topic,
         greatest($5::timestamptz,
                  (SELECT to_timestamp((p->>'value')::numeric / 1000) FROM jsonb_array_elements(src.properties) p
                    WHERE p->>'key' = 'kiteq.deliverAt' AND p->>'value' ~ '^[0-9]{1,15}$' LIMIT 1)),
         $6, deliver_limit FROM src
  ON CONFLICT DO NOTHING
  RETURNING message_pk
), ev AS (
  INSERT INTO message_events (message_pk, kind, at, group_id, node_id, detail)
  SELECT message_pk, 'redriven', $5, $2, $7, $8 FROM ins
), wake AS (SELECT pg_notify('kiteq_due', '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_row)
SELECT (SELECT max(id) FROM scanned) AS last_id, (SELECT count(*) FROM scanned)::int AS scanned,
       (SELECT count(*) FROM ins)::int AS n, (SELECT array_agg(message_pk)::text[] FROM ins) AS pks,
       (SELECT count(*) FROM wake) AS notified,
       (SELECT array_agg(message_type) FROM unjudged) AS unjudged`;

/**
 * Replay: give `groupId` a fresh delivery of every committed message of `topic` stored in
 * [since, until), with a `redriven` row each (detail: the reason). Messages the group still owes
 * are left as they are. Runs in batches of BACKGROUND_BATCH messages, each its own transaction,
 * stamped with its own time: `now` for the first, then `now` plus the time the replay has taken
 * (at least a millisecond later than the batch before). One time for every batch put a whole
 * replay's rows at one instant of the group's history, and a page of `history --group` reads
 * every row of the instant it starts in: 1.5-2.4 s a page of 2,000 after a replay of 120,000.
 * Returns how many deliveries were created.
 */
export async function replayRange(
  db: Queryable,
  args: {
    topic: string;
    groupId: string;
    since: Date;
    until: Date;
    now: Date;
    expiresAt: Date;
    nodeId: string;
    reason: string;
    /**
     * Whether the group's bindings to the topic match a message type (the broker's matcher: Go's
     * regexp syntax for Regx); absent: every type (a Fanout binding).
     */
    matchesType?: (messageType: string) => boolean;
    /** Asked before each batch (the first excepted): true stops the replay there. */
    shouldStop?: () => boolean;
    /**
     * Count only: each batch runs as it would, in a transaction rolled back (so the count is the
     * replay's own, to the message), and nothing is written or notified. Needs a pool.
     */
    dryRun?: boolean;
  },
): Promise<number> {
  if (args.dryRun === true && !("totalCount" in db)) throw new Error("replayRange: a dry run needs a pool");
  let created = 0;
  let lastId = 0;
  // Types judged in the previous batch are carried over (most topics have few types), bounded by
  // a batch's worth so that a topic with a new type per message does not grow the arrays.
  let matched: string[] = [];
  let unmatched: string[] = [];
  const started = performance.now();
  let lastAt = Number.NEGATIVE_INFINITY;
  for (;;) {
    const batchAt = new Date(
      Math.max(args.now.getTime() + Math.floor(performance.now() - started), lastAt + 1),
    );
    // Each batch with its dead letters forgotten, in one transaction (see FORGET_DEAD_LETTERS).
    const transaction = args.dryRun === true ? inRolledBackTransaction : inOneTransaction;
    const rows = await transaction(db, async (c) => {
      const batch = await c.query<{
        last_id: number | null;
        scanned: number;
        n: number;
        pks: string[] | null;
        unjudged: string[] | null;
      }>({
        text: REPLAY_BATCH,
        values: [
          args.topic,
          args.groupId,
          args.since,
          args.until,
          batchAt,
          args.expiresAt,
          args.nodeId,
          args.reason,
          lastId,
          BACKGROUND_BATCH,
          args.matchesType === undefined ? null : matched,
          unmatched,
        ],
      });
      const pks = batch.rows[0]?.pks;
      if (pks != null && pks.length > 0) await c.query(FORGET_DEAD_LETTERS, [pks, args.groupId]);
      return batch.rows;
    });
    const r = rows[0]!;
    if (r.unjudged !== null && args.matchesType !== undefined) {
      // Nothing of this batch was written: judge its new types, then run it again.
      if (matched.length + unmatched.length + r.unjudged.length > BACKGROUND_BATCH) {
        matched = [];
        unmatched = [];
      }
      for (const type of r.unjudged) (args.matchesType(type) ? matched : unmatched).push(type);
      continue;
    }
    created += r.n;
    lastAt = batchAt.getTime();
    if (r.scanned < BACKGROUND_BATCH || r.last_id === null) return created;
    lastId = r.last_id;
    if (args.shouldStop?.() === true) return created;
  }
}
