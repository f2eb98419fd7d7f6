/**
 * Statements on the messages table (and what is written with a message in its transaction).
 */
import type pg from "pg";
import { boolArray, nullableNumberArray, numberArray, textArray } from "./pg-arrays.js";

/** A message to store, already validated and normalised (KiteQ's rules applied). */
export interface PublishRecord {
  messageId: string;
  topic: string;
  messageType: string;
  groupId: string;
  /** false: two-phase commit, stored uncommitted, not delivered. */
  commit: boolean;
  expiresAt: Date;
  deliverLimit: number;
  createdAt: Date;
  properties: { key: string; value: string }[];
  snappy: boolean;
  bodyIsString: boolean;
  body: Buffer;
  /** Delayed delivery (`kiteq.deliverAt`): no delivery is due before it; absent or null: due now. */
  deliverAt?: Date | null;
  /** Groups owed a delivery (committed messages only), and the node pre-claiming it, if any. */
  deliveries: { groupId: string; claimedBy: string | null }[];
}

/** What the store says about each record of a batch, in input order. */
export interface PublishResult {
  messageId: string;
  /** Internal id; undefined when the message was a duplicate (already stored). */
  pk: number | undefined;
  duplicate: boolean;
  /** Until when the deliveries this batch pre-claimed are leased (epoch ms). */
  leaseUntilMs?: number;
}

/** Batch-wide parameters of a publish transaction. Time is a parameter (tests fix it). */
export interface PublishBatchOptions {
  now: Date;
  nodeId: string;
  /** lease_until for deliveries pre-claimed by this node. */
  leaseUntil: Date;
  /** First TxACK check time for uncommitted messages. */
  firstTxCheckAt: Date;
}

/**
 * One statement, one transaction, one fsync for the whole batch: message_ids rows (the one unique
 * index on a messageId: a repeat within the retention window, whatever its createTime, inserts
 * nothing), messages rows in the partition of the broker's receive time ($14), their
 * received/uncommitted history rows, the deliveries of committed messages (pre-claimed ones
 * included), the pending_transactions rows of uncommitted ones, and one NOTIFY if any delivery
 * is left for other nodes to claim. A delayed message ($22 per message, $23 per delivery:
 * deliverAt, epoch seconds or NULL) gets deliveries due at that time (never pre-claimed: planDeliveries leaves them to the claim path)
 * and a `received` row saying when it is due. The ids of a batch are distinct (insertPublishBatch
 * sends the first of two equal ids only).
 */
const INSERT_PUBLISH_BATCH = `
WITH m AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::float8[], $7::int2[],
                       $8::float8[], $9::text[], $10::bool[], $11::bool[], $12::int[], $21::int[], $22::float8[])
    WITH ORDINALITY
    AS m(message_id, topic, message_type, group_id, cmt, expires_at, deliver_limit, created_at,
         properties, snappy, body_is_string, body_at, body_len, deliver_at, ord)
), ids AS (
  INSERT INTO message_ids (message_id, message_pk, stored_at)
  SELECT message_id, nextval('messages_id_seq'), $14 FROM m
  ON CONFLICT DO NOTHING
  RETURNING message_id, message_pk
), ins AS (
  INSERT INTO messages (id, message_id, topic, message_type, group_id, "commit", expires_at, deliver_limit,
                        created_at, stored_at, properties, snappy, body_is_string, body)
  SELECT ids.message_pk, m.message_id, m.topic, m.message_type, m.group_id, m.cmt,
         to_timestamp(m.expires_at), m.deliver_limit, to_timestamp(m.created_at), $14, m.properties::jsonb,
         m.snappy, m.body_is_string, substring($20::bytea FROM m.body_at + 1 FOR m.body_len)
    FROM m JOIN ids ON ids.message_id = m.message_id
  RETURNING id, message_id, topic, "commit", expires_at, deliver_limit, group_id
), ev AS (
  INSERT INTO message_events (message_pk, kind, at, node_id, detail)
  SELECT ins.id, CASE WHEN ins."commit" THEN 'received'::message_event_kind ELSE 'uncommitted'::message_event_kind END,
         $14, $15,
         CASE WHEN m.deliver_at IS NOT NULL
              THEN 'due at ' || to_char(to_timestamp(m.deliver_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') END
    FROM ins JOIN m ON m.message_id = ins.message_id
), dl AS (
  INSERT INTO deliveries (message_pk, group_id, message_stored_at, topic, next_attempt_at, expires_at,
                          deliver_limit, claimed_by, lease_until, claim_epoch)
  SELECT ins.id, d.group_id, $14, ins.topic, COALESCE(to_timestamp(d.deliver_at), $14), ins.expires_at,
         ins.deliver_limit, d.claimed_by,
         CASE WHEN d.claimed_by IS NULL THEN NULL ELSE $16::timestamptz END,
         CASE WHEN d.claimed_by IS NULL THEN 0 ELSE 1 END
    FROM unnest($13::text[], $18::text[], $19::text[], $23::float8[]) AS d(message_id, group_id, claimed_by, deliver_at)
    JOIN ins ON ins.message_id = d.message_id AND ins."commit"
  RETURNING claimed_by
), tx AS (
  INSERT INTO pending_transactions (message_pk, message_stored_at, message_id, topic, group_id, next_check_at, stored_at)
  SELECT id, $14, message_id, topic, group_id, $17, $14 FROM ins WHERE NOT "commit"
), wake AS (
  SELECT pg_notify('kiteq_due', '') FROM (SELECT 1 FROM dl WHERE claimed_by IS NULL LIMIT 1) AS owed
)
SELECT ins.id, ins.message_id, (SELECT count(*) FROM wake) AS notified FROM ins`;

/**
 * Store a batch of published messages in one transaction (see INSERT_PUBLISH_BATCH).
 * Throws on any database error: the caller must then answer every message with status false.
 */
export async function insertPublishBatch(
  client: pg.Pool | pg.PoolClient,
  batch: readonly PublishRecord[],
  options: PublishBatchOptions,
): Promise<PublishResult[]> {
  // The first of two equal ids in one batch is written; the second is its duplicate. Rows go in
  // messageId order: two nodes' batches holding the same ids (a producer resending to another
  // broker) then take message_ids' index locks in the same order instead of deadlocking.
  const seen = new Set<string>();
  const records = batch
    .filter((r) => !seen.has(r.messageId) && seen.add(r.messageId) !== undefined)
    .sort((a, b) => (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0));
  const n = records.length;
  const cols = {
    messageId: new Array<string>(n),
    topic: new Array<string>(n),
    messageType: new Array<string>(n),
    groupId: new Array<string>(n),
    commit: new Array<boolean>(n),
    expiresAt: new Array<number>(n),
    deliverLimit: new Array<number>(n),
    createdAt: new Array<number>(n),
    properties: new Array<string | null>(n),
    snappy: new Array<boolean>(n),
    bodyIsString: new Array<boolean>(n),
    bodyAt: new Array<number>(n),
    bodyLength: new Array<number>(n),
    deliverAt: new Array<number | null>(n),
  };
  // Timestamps go as epoch seconds and bodies as one binary parameter with offsets: formatting
  // Dates and hex-escaping bytea arrays was a visible share of the broker's CPU.
  const bodies: Buffer[] = new Array<Buffer>(n);
  let offset = 0;
  const dMessageIds: string[] = [];
  const dGroupIds: string[] = [];
  const dClaimedBy: (string | null)[] = [];
  const dDeliverAt: (number | null)[] = [];
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    cols.messageId[i] = r.messageId;
    cols.topic[i] = r.topic;
    cols.messageType[i] = r.messageType;
    cols.groupId[i] = r.groupId;
    cols.commit[i] = r.commit;
    cols.expiresAt[i] = r.expiresAt.getTime() / 1000;
    cols.deliverLimit[i] = r.deliverLimit;
    cols.createdAt[i] = r.createdAt.getTime() / 1000;
    cols.properties[i] = r.properties.length === 0 ? null : JSON.stringify(r.properties);
    cols.snappy[i] = r.snappy;
    cols.bodyIsString[i] = r.bodyIsString;
    bodies[i] = r.body;
    cols.bodyAt[i] = offset;
    cols.bodyLength[i] = r.body.length;
    cols.deliverAt[i] = r.deliverAt == null ? null : r.deliverAt.getTime() / 1000;
    offset += r.body.length;
    if (r.commit) {
      for (const d of r.deliveries) {
        dMessageIds.push(r.messageId);
        dGroupIds.push(d.groupId);
        dClaimedBy.push(d.claimedBy);
        dDeliverAt.push(cols.deliverAt[i] ?? null);
      }
    }
  }
  const { rows } = await client.query<{ id: number; message_id: string }>({
    name: "insert_publish_batch",
    text: INSERT_PUBLISH_BATCH,
    values: [
      textArray(cols.messageId),
      textArray(cols.topic),
      textArray(cols.messageType),
      textArray(cols.groupId),
      boolArray(cols.commit),
      numberArray(cols.expiresAt),
      numberArray(cols.deliverLimit),
      numberArray(cols.createdAt),
      textArray(cols.properties),
      boolArray(cols.snappy),
      boolArray(cols.bodyIsString),
      numberArray(cols.bodyAt),
      textArray(dMessageIds),
      options.now,
      options.nodeId,
      options.leaseUntil,
      options.firstTxCheckAt,
      textArray(dGroupIds),
      textArray(dClaimedBy),
      Buffer.concat(bodies, offset),
      numberArray(cols.bodyLength),
      nullableNumberArray(cols.deliverAt),
      nullableNumberArray(dDeliverAt),
    ],
  });
  const pkById = new Map<string, number>();
  for (const row of rows) pkById.set(row.message_id, row.id);
  return batch.map((r) => {
    const pk = pkById.get(r.messageId);
    // The first of two identical ids in one batch gets the pk; the second is its duplicate.
    if (pk !== undefined) pkById.delete(r.messageId);
    return {
      messageId: r.messageId,
      pk,
      duplicate: pk === undefined,
      leaseUntilMs: options.leaseUntil.getTime(),
    };
  });
}
