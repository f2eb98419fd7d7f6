/**
 * Two-phase commit statements: pending_transactions (one row per message still uncommitted) and
 * the history rows written with each change. A commit or rollback deletes the pending row, so the
 * DELETE is what makes them idempotent. Time is always a parameter.
 */
import type pg from "pg";
import { inOneTransaction } from "./db.js";
import { BACKGROUND_BATCH, prefixUpperBound } from "./deliveries.js";

type Queryable = pg.Pool | pg.PoolClient;

/** An uncommitted message as stored (what a commit needs to plan and push its deliveries). */
export interface PendingMessage {
  messagePk: number;
  messageId: string;
  topic: string;
  messageType: string;
  /** The publishing group (header.groupId). */
  groupId: string;
  expiresAt: Date;
  deliverLimit: number;
  createdAt: Date;
  storedAt: Date;
  properties: { key: string; value: string }[];
  snappy: boolean;
  bodyIsString: boolean;
  /** Checks sent so far. */
  checks: number;
}

/** A pending message with its body (read for commits, to push pre-claimed deliveries at once). */
export interface CommittableMessage extends PendingMessage {
  body: Buffer;
}

/** A producer's decision about one message, from a TX_ACK. */
/** History detail of a tx_checked row that records a producer's "unknown" answer to a check. */
export const TX_ANSWER_UNKNOWN = "unknown";

export interface TxAnswer {
  /** KiteQ message id (lower case). */
  messageId: string;
  /** committed / rolled_back end the transaction; tx_checked records an "unknown" answer. */
  kind: "committed" | "rolled_back" | "tx_checked";
  /** History detail (who answered, to which check). */
  detail: string;
  /** The check this answers (history `attempt`), or null for a producer's own TX_ACK. */
  check: number | null;
  /**
   * The group of the session that answered, when only the publishing group may decide (secrets
   * configured): an answer for another group's message changes nothing (wrongGroup).
   */
  fromGroup?: string;
}

/** What happened to one TxAnswer. */
export interface TxAnswerResult {
  /** false: the message is not pending (unknown, or already committed or rolled back), or wrongGroup. */
  applied: boolean;
  /** The message is pending but was published by another group than TxAnswer.fromGroup. */
  wrongGroup: boolean;
  /** The message, when applied. */
  message: CommittableMessage | undefined;
  /** Deliveries created (committed only). */
  deliveries: { groupId: string; claimedBy: string | null }[];
}

/** Parameters of applyTxAnswers. */
export interface ApplyTxAnswersOptions {
  now: Date;
  nodeId: string;
  /** lease_until of deliveries the plan pre-claims. */
  leaseUntil: Date;
  /** Groups owed a committed message (and the pre-claiming node, if any). Called under the row lock. */
  plan(message: CommittableMessage): { groupId: string; claimedBy: string | null }[];
}

/**
 * The pending rows of message ids ($1): one lookup per id by pending_transactions' message_id
 * index (a LATERAL subquery kept apart by OFFSET 0: PostgreSQL cannot turn it into a join, whose
 * plan on a queue table's statistics walked the whole table). No lock: LOCK_PENDING takes them.
 */
const FIND_PENDING = `
SELECT x.message_pk
  FROM unnest($1::text[]) AS i(message_id)
  CROSS JOIN LATERAL (SELECT p.message_pk FROM pending_transactions p WHERE p.message_id = i.message_id OFFSET 0) x`;

/**
 * Lock the pending rows of message_pks ($1, in message_pk order: no deadlocks with the check
 * records, which lock in that order too), with their messages: one lookup per row by its primary
 * key (LATERAL with FOR UPDATE: never a join, whatever the statistics). A row decided meanwhile
 * is not there. Its ctid is what APPLY_TX_ANSWERS changes it by, in the same transaction.
 */
const LOCK_PENDING = `
SELECT p.ctid::text AS ctid, p.message_pk, p.message_id, p.checks, p.stored_at, m.topic, m.message_type, m.group_id,
       m.expires_at, m.deliver_limit, m.created_at, m.properties, m.snappy, m.body_is_string,
       CASE WHEN p.message_id = ANY($2) THEN m.body END AS body
  FROM unnest($1::bigint[]) AS k(message_pk)
  CROSS JOIN LATERAL (
    SELECT p.ctid, p.message_pk, p.message_id, p.checks, p.stored_at, p.message_stored_at
      FROM pending_transactions p WHERE p.message_pk = k.message_pk
       FOR UPDATE OF p
  ) p
  CROSS JOIN LATERAL (
    SELECT * FROM messages WHERE id = p.message_pk AND stored_at = p.message_stored_at LIMIT 1
  ) m`;

/**
 * One statement for a batch of decided answers: delete the pending rows of commits and rollbacks,
 * insert the deliveries of commits, append committed / rolled_back / tx_checked rows, and one
 * NOTIFY if any delivery is left for the claim path (none for pre-claimed ones).
 */
const APPLY_TX_ANSWERS = `
WITH input AS (
  SELECT * FROM unnest($1::bigint[], $2::message_event_kind[], $3::text[], $4::int[], $15::text[])
    AS i(message_pk, kind, detail, attempt, ctid)
), gone AS (
  -- By ctid: LOCK_PENDING locked these rows in this transaction (a TID scan, whatever the statistics).
  DELETE FROM pending_transactions p USING input i
   WHERE p.ctid = ANY (ARRAY(SELECT ctid::tid FROM input WHERE kind IN ('committed', 'rolled_back')))
     AND p.ctid = i.ctid::tid AND i.kind IN ('committed', 'rolled_back')
  RETURNING p.message_pk, i.kind
), dl AS (
  INSERT INTO deliveries (message_pk, group_id, message_stored_at, topic, next_attempt_at, expires_at,
                          deliver_limit, claimed_by, lease_until, claim_epoch)
  SELECT d.message_pk, d.group_id, d.stored_at, d.topic, $5, d.expires_at, d.deliver_limit, d.claimed_by,
         CASE WHEN d.claimed_by IS NULL THEN NULL ELSE $7::timestamptz END,
         CASE WHEN d.claimed_by IS NULL THEN 0 ELSE 1 END
    FROM unnest($8::bigint[], $9::text[], $10::timestamptz[], $11::text[], $12::timestamptz[], $13::int2[],
                $14::text[]) AS d(message_pk, group_id, stored_at, topic, expires_at, deliver_limit, claimed_by)
    JOIN gone g ON g.message_pk = d.message_pk AND g.kind = 'committed'
  ON CONFLICT DO NOTHING
  RETURNING claimed_by
), ev AS (
  INSERT INTO message_events (message_pk, kind, at, node_id, attempt, detail)
  SELECT i.message_pk, i.kind, $5, $6, i.attempt, i.detail
    FROM input i
   WHERE i.kind = 'tx_checked' OR EXISTS (SELECT 1 FROM gone g WHERE g.message_pk = i.message_pk)
  RETURNING message_pk
), wake AS (
  SELECT pg_notify('kiteq_due', '') FROM (SELECT 1 FROM dl WHERE claimed_by IS NULL LIMIT 1) AS owed
)
SELECT (SELECT count(*) FROM gone)::int AS decided, (SELECT count(*) FROM ev)::int AS events,
       (SELECT count(*) FROM wake)::int AS notified`;

/**
 * Apply a batch of producers' answers in one transaction: lock the pending rows, plan the
 * deliveries of commits (options.plan), then APPLY_TX_ANSWERS. An answer for a message that is no
 * longer pending changes nothing (applied false). Within the batch the first answer to decide a
 * message wins; an "unknown" after a decision is dropped. Given a Pool, runs its own transaction;
 * given a client, runs in the caller's (which must be open: the lock lasts until its commit).
 */
export async function applyTxAnswers(
  db: Queryable,
  answers: readonly TxAnswer[],
  options: ApplyTxAnswersOptions,
): Promise<TxAnswerResult[]> {
  if (answers.length === 0) return [];
  if (!isClient(db)) {
    const client = await db.connect();
    try {
      await client.query("BEGIN");
      const results = await applyTxAnswers(client, answers, options);
      await client.query("COMMIT");
      return results;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }
  const ids = [...new Set(answers.map((a) => a.messageId))];
  const commitIds = [...new Set(answers.filter((a) => a.kind === "committed").map((a) => a.messageId))];
  const { rows: found } = await db.query<{ message_pk: number }>({
    name: "find_pending_tx",
    text: FIND_PENDING,
    values: [ids],
  });
  const pks = [...new Set(found.map((r) => r.message_pk))].sort((a, b) => a - b);
  const { rows } = await db.query({ name: "lock_pending_tx", text: LOCK_PENDING, values: [pks, commitIds] });
  const byId = new Map<string, CommittableMessage[]>();
  const ctidOf = new Map<number, string>();
  for (const r of rows) {
    const m = toPendingMessage(r) as CommittableMessage;
    m.body = r.body ?? Buffer.alloc(0);
    byId.set(m.messageId, [...(byId.get(m.messageId) ?? []), m]);
    ctidOf.set(m.messagePk, r.ctid);
  }
  const decided = new Set<number>();
  const input = {
    pk: [] as number[],
    kind: [] as string[],
    detail: [] as string[],
    attempt: [] as (number | null)[],
    ctid: [] as string[],
  };
  const dl = {
    pk: [] as number[],
    group: [] as string[],
    storedAt: [] as Date[],
    topic: [] as string[],
    expiresAt: [] as Date[],
    deliverLimit: [] as number[],
    claimedBy: [] as (string | null)[],
  };
  const results: TxAnswerResult[] = [];
  for (const a of answers) {
    const result: TxAnswerResult = { applied: false, wrongGroup: false, message: undefined, deliveries: [] };
    results.push(result);
    // Normally one row; a reused messageId with another createTime is decided with it.
    for (const m of byId.get(a.messageId) ?? []) {
      if (decided.has(m.messagePk)) continue;
      if (a.fromGroup !== undefined && a.fromGroup !== m.groupId) {
        result.wrongGroup = true;
        continue;
      }
      if (a.kind !== "tx_checked") decided.add(m.messagePk);
      input.pk.push(m.messagePk);
      input.kind.push(a.kind);
      input.detail.push(a.detail);
      input.attempt.push(a.check);
      input.ctid.push(ctidOf.get(m.messagePk)!);
      result.applied = true;
      result.message = m;
      if (a.kind !== "committed") continue;
      for (const d of options.plan(m)) {
        result.deliveries.push(d);
        dl.pk.push(m.messagePk);
        dl.group.push(d.groupId);
        dl.storedAt.push(m.storedAt);
        dl.topic.push(m.topic);
        dl.expiresAt.push(m.expiresAt);
        dl.deliverLimit.push(m.deliverLimit);
        dl.claimedBy.push(d.claimedBy);
      }
    }
  }
  if (input.pk.length === 0) return results;
  await db.query({
    // Named, as the two above: planned once per connection (the broker's sessions use generic
    // plans), not at every batch of answers (it was most of a batch of one: 3.9 ms).
    name: "apply_tx_answers",
    text: APPLY_TX_ANSWERS,
    values: [
      input.pk,
      input.kind,
      input.detail,
      input.attempt,
      options.now,
      options.nodeId,
      options.leaseUntil,
      dl.pk,
      dl.group,
      dl.storedAt,
      dl.topic,
      dl.expiresAt,
      dl.deliverLimit,
      dl.claimedBy,
      input.ctid,
    ],
  });
  return results;
}

/** A pending transaction claimed for a check. */
export interface ClaimedTxCheck extends PendingMessage {
  /** Epoch of this claim: recordTxChecks applies only with it. */
  claimEpoch: number;
}

/**
 * Claim up to `limit` pending transactions of `groups` whose next check is due, at most $7[i] of
 * group $1[i], skipping rows other nodes hold locked, those claimed under a live lease, and those
 * old enough to be given up (stored before `giveUpBefore`: the give-up sweep takes them). Each
 * claim bumps claim_epoch.
 */
const CLAIM_DUE_TX_CHECKS = `
WITH due AS (
  -- Per group, oldest due first on (group_id, next_check_at): bounded by $6 whatever is pending.
  SELECT d.ctid
    FROM unnest($1::text[], $7::int[]) AS g(group_id, room)
    CROSS JOIN LATERAL (
      SELECT ctid, next_check_at FROM pending_transactions
       WHERE group_id = g.group_id AND next_check_at <= $2 AND stored_at > $5
         AND (claimed_by IS NULL OR lease_until < $2)
       ORDER BY next_check_at
       LIMIT least(g.room, $6)
       FOR UPDATE SKIP LOCKED
    ) d
   ORDER BY d.next_check_at
   LIMIT $6
), claimed AS (
  -- By ctid (the rows are locked, so it is stable): a TID scan whatever the table's size.
  UPDATE pending_transactions p SET claimed_by = $3, lease_until = $4, claim_epoch = p.claim_epoch + 1
   WHERE p.ctid = ANY (ARRAY(SELECT ctid FROM due))
  RETURNING p.message_pk, p.message_id, p.message_stored_at, p.checks, p.claim_epoch, p.stored_at, p.next_check_at
)
SELECT c.message_pk, c.message_id, c.checks, c.claim_epoch, c.stored_at, m.topic, m.message_type, m.group_id,
       m.expires_at, m.deliver_limit, m.created_at, m.properties, m.snappy, m.body_is_string
  FROM claimed c
  CROSS JOIN LATERAL (
    SELECT topic, message_type, group_id, expires_at, deliver_limit, created_at, properties, snappy, body_is_string
      FROM messages WHERE id = c.message_pk AND stored_at = c.message_stored_at LIMIT 1
  ) m
 ORDER BY c.next_check_at`;

/**
 * Claim due checks (see CLAIM_DUE_TX_CHECKS): at most `limit` in all and, when given, at most
 * `limits[i]` of `groups[i]` (the checks its producers here can take now).
 */
export async function claimDueTxChecks(
  db: Queryable,
  args: {
    groups: string[];
    limits?: number[];
    now: Date;
    claimer: string;
    leaseUntil: Date;
    giveUpBefore: Date;
    limit: number;
  },
): Promise<ClaimedTxCheck[]> {
  if (args.groups.length === 0) return [];
  const limits = args.limits ?? args.groups.map(() => args.limit);
  const { rows } = await db.query({
    name: "claim_tx_checks",
    text: CLAIM_DUE_TX_CHECKS,
    values: [args.groups, args.now, args.claimer, args.leaseUntil, args.giveUpBefore, args.limit, limits],
  });
  return rows.map((r) => ({ ...toPendingMessage(r), claimEpoch: r.claim_epoch }));
}

/** The outcome of one claimed check. */
export interface TxCheckRecord {
  messagePk: number;
  claimEpoch: number;
  /** The check was sent (false: no producer connection left here; the claim is just released). */
  sent: boolean;
  /** Number of this check (1 = first); history `attempt`. */
  check: number;
  /** When to check again (sent only). */
  nextCheckAt: Date;
  /** History detail: where the check went (or, expired, why it ended). */
  detail: string;
  /**
   * The message expired uncommitted: no check is sent (a commit now would deliver nothing); its
   * pending row ends with a `rolled_back` row whose detail is `detail`.
   */
  expired?: boolean;
}

/**
 * Checks sent: a `tx_checked` row each (the check went out whatever happened to the row since),
 * and, fenced by claim epoch, count it, schedule the next one and release the claim. Unsent
 * claims are released as they were; expired ones end (their pending row deleted, a `rolled_back`
 * row). Returns the rows rescheduled, released or ended.
 *
 * The rows are locked first, in message_pk order as LOCK_PENDING does for producers' answers (an
 * UPDATE ... FROM locks them in its join's order, and a batch of answers holding one row while it
 * waited for another that the record held deadlocked with it: seen at 200,000 pending), each by a
 * lookup of its own (a LATERAL subquery that locks, which PostgreSQL cannot turn into a join: on
 * the statistics of a queue table analysed nearly empty, the join walked the whole primary key);
 * then changed by ctid in a second statement of the transaction, whose snapshot sees the very
 * versions locked (one statement's own snapshot would miss a version updated while it waited).
 */
export async function recordTxChecks(
  db: Queryable,
  records: readonly TxCheckRecord[],
  options: { now: Date; nodeId: string },
): Promise<number> {
  if (records.length === 0) return 0;
  const sorted = [...records].sort((a, b) => a.messagePk - b.messagePk);
  return inOneTransaction(db, async (c) => {
    const { rows: locked } = await c.query<{ i: number; ctid: string }>({
      name: "lock_tx_checks",
      text: `SELECT a.i::int AS i, x.ctid::text AS ctid
               FROM unnest($1::bigint[], $2::int[]) WITH ORDINALITY AS a(message_pk, claim_epoch, i)
              CROSS JOIN LATERAL (
                SELECT p.ctid FROM pending_transactions p
                 WHERE p.message_pk = a.message_pk AND p.claim_epoch = a.claim_epoch
                   FOR UPDATE OF p
              ) x`,
      values: [sorted.map((r) => r.messagePk), sorted.map((r) => r.claimEpoch)],
    });
    const ctids = new Array<string | null>(sorted.length).fill(null);
    const seen = new Set<string>();
    for (const l of locked) {
      if (seen.has(l.ctid)) continue;
      seen.add(l.ctid);
      ctids[l.i - 1] = l.ctid;
    }
    const { rows } = await c.query<{ n: number }>({
      name: "record_tx_checks",
      text: `WITH input AS (
               SELECT * FROM unnest($1::text[], $2::bigint[], $3::bool[], $4::int[], $5::timestamptz[], $6::text[], $9::bool[])
                 AS r(ctid, message_pk, sent, check_no, next_check_at, detail, expired)
             ), sent_values AS (
               SELECT jsonb_object_agg(ctid, jsonb_build_array(check_no, next_check_at)) AS m
                 FROM input WHERE ctid IS NOT NULL AND sent AND NOT expired
             ), upd AS (
               -- By ctid, the array alone (a TID scan), a sent check's values looked up by its ctid
               -- in one jsonb object built once (an unsent one is not in it: its row keeps them):
               -- joined with input by ctid, the generic plan looked each tuple up from its record
               -- and then searched the whole array for it (n x n).
               UPDATE pending_transactions p
                  SET checks = coalesce(((SELECT m FROM sent_values) -> p.ctid::text ->> 0)::int, p.checks),
                      next_check_at = coalesce(((SELECT m FROM sent_values) -> p.ctid::text ->> 1)::timestamptz,
                                               p.next_check_at),
                      claimed_by = NULL, lease_until = NULL
                WHERE p.ctid = ANY (ARRAY(SELECT ctid::tid FROM input WHERE NOT expired))
               RETURNING p.message_pk
             ), gone AS (
               DELETE FROM pending_transactions p
                WHERE p.ctid = ANY (ARRAY(SELECT ctid::tid FROM input WHERE expired))
               RETURNING p.message_pk, p.checks,
                         (SELECT jsonb_object_agg(ctid, detail) FROM input WHERE ctid IS NOT NULL AND expired)
                           ->> p.ctid::text AS detail
             ), ended AS (
               INSERT INTO message_events (message_pk, kind, at, node_id, attempt, detail)
               SELECT message_pk, 'rolled_back', $7, $8, checks, detail FROM gone
             ), ev AS (
               INSERT INTO message_events (message_pk, kind, at, node_id, attempt, detail)
               SELECT message_pk, 'tx_checked', $7, $8, check_no, detail FROM input WHERE sent
             )
             SELECT ((SELECT count(*) FROM upd) + (SELECT count(*) FROM gone))::int AS n`,
      values: [
        ctids,
        sorted.map((r) => r.messagePk),
        sorted.map((r) => r.sent),
        sorted.map((r) => r.check),
        sorted.map((r) => r.nextCheckAt),
        sorted.map((r) => r.detail),
        options.now,
        options.nodeId,
        sorted.map((r) => r.expired === true),
      ],
    });
    return rows[0]?.n ?? 0;
  });
}

/**
 * Give-up sweep: roll back up to `limit` pending transactions stored before `storedBefore`, with a
 * `rolled_back` row whose detail is `detail` plus the number of checks sent. Rows another node
 * holds locked are skipped (found by the next sweep). Returns how many were rolled back.
 */
export async function giveUpTransactions(
  db: Queryable,
  args: { storedBefore: Date; now: Date; nodeId: string; detail: string; limit: number },
): Promise<number> {
  const { rowCount } = await db.query({
    text: `WITH v AS (
             SELECT ctid FROM pending_transactions WHERE stored_at <= $1
              ORDER BY stored_at LIMIT $5 FOR UPDATE SKIP LOCKED
           ), gone AS (
             DELETE FROM pending_transactions p WHERE p.ctid = ANY (ARRAY(SELECT ctid FROM v))
             RETURNING p.message_pk, p.checks)
           INSERT INTO message_events (message_pk, kind, at, node_id, attempt, detail)
           SELECT message_pk, 'rolled_back', $2, $3, checks,
                  $4 || ' (' || checks || CASE WHEN checks = 1 THEN ' check' ELSE ' checks' END || ' sent)'
             FROM gone`,
    values: [args.storedBefore, args.now, args.nodeId, args.detail, args.limit],
  });
  return rowCount ?? 0;
}

/**
 * When the checker should next look: the earliest due check among `groups` (a claimed row counts
 * from its lease end) and the earliest give-up time of any row, or null when nothing is pending.
 */
export async function nextTxCheckTime(
  db: Queryable,
  groups: string[],
  giveUpSeconds: number,
): Promise<Date | null> {
  const { rows } = await db.query<{ t: Date | null }>({
    // Per group, the first rows by next_check_at (a bounded look: claimed rows count from their
    // lease end, and a few hundred in flight at the head are skipped over at most).
    text: `SELECT least(
             (SELECT min(CASE WHEN p.claimed_by IS NULL THEN p.next_check_at
                              ELSE greatest(p.next_check_at, p.lease_until) END)
                FROM unnest($1::text[]) AS g(group_id)
                CROSS JOIN LATERAL (
                  SELECT next_check_at, claimed_by, lease_until FROM pending_transactions
                   WHERE group_id = g.group_id ORDER BY next_check_at LIMIT 500) p),
             (SELECT min(stored_at) FROM pending_transactions) + make_interval(secs => $2)) AS t`,
    values: [groups, giveUpSeconds],
  });
  return rows[0]?.t ?? null;
}

/**
 * Release the check claims of claimers whose id starts with `prefix` (this node's earlier runs),
 * except `except`, so their checks are made now instead of after the lease.
 */
export async function releaseTxClaimsOf(db: Queryable, prefix: string, except = ""): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await db.query({
      text: `WITH r AS (
               SELECT ctid FROM pending_transactions
                WHERE claimed_by COLLATE "C" >= $1 AND claimed_by COLLATE "C" < $2 AND claimed_by <> $3
                LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE pending_transactions SET claimed_by = NULL, lease_until = NULL
              WHERE ctid = ANY (ARRAY(SELECT ctid FROM r))`,
      values: [prefix, prefixUpperBound(prefix), except, BACKGROUND_BATCH],
    });
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < BACKGROUND_BATCH) return total;
  }
}

function isClient(db: Queryable): db is pg.PoolClient {
  return typeof (db as Partial<pg.PoolClient>).release === "function";
}

interface PendingRow {
  message_pk: number;
  message_id: string;
  checks: number;
  stored_at: Date;
  topic: string;
  message_type: string;
  group_id: string;
  expires_at: Date;
  deliver_limit: number;
  created_at: Date;
  properties: { key: string; value: string }[] | null;
  snappy: boolean;
  body_is_string: boolean;
}

function toPendingMessage(r: PendingRow): PendingMessage {
  return {
    messagePk: r.message_pk,
    messageId: r.message_id,
    topic: r.topic,
    messageType: r.message_type,
    groupId: r.group_id,
    expiresAt: r.expires_at,
    deliverLimit: r.deliver_limit,
    createdAt: r.created_at,
    storedAt: r.stored_at,
    properties: r.properties ?? [],
    snappy: r.snappy,
    bodyIsString: r.body_is_string,
    checks: r.checks,
  };
}

/**
 * A producer's commit for a message already rolled back (given up after txGiveUpSeconds, or
 * rolled back by an earlier answer): the message stays undelivered, and a `tx_checked` row with
 * `detail` records that its producer committed it after all. One index probe of message_ids and
 * one of message_events_message_idx; nothing when the message was not rolled back (a commit
 * repeated after it was applied). Returns whether it was rolled back (and the row written).
 */
export const RECORD_COMMIT_AFTER_ROLLBACK = `
WITH m AS (
  SELECT i.message_pk FROM message_ids i
   WHERE i.message_id = $1
     AND EXISTS (SELECT 1 FROM message_events e WHERE e.message_pk = i.message_pk AND e.kind = 'rolled_back')
)
INSERT INTO message_events (message_pk, kind, at, node_id, detail)
SELECT message_pk, 'tx_checked', $2, $3, $4 FROM m
RETURNING message_pk`;

/** See RECORD_COMMIT_AFTER_ROLLBACK. */
export async function recordCommitAfterRollback(
  db: Queryable,
  args: { messageId: string; now: Date; nodeId: string; detail: string },
): Promise<boolean> {
  const { rowCount } = await db.query({
    text: RECORD_COMMIT_AFTER_ROLLBACK,
    values: [args.messageId, args.now, args.nodeId, args.detail],
  });
  return (rowCount ?? 0) > 0;
}
