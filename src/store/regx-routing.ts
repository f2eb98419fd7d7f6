/**
 * Messages published with kiteq_publish (SQL) to a topic with Regx bindings wait in regx_routing
 * (migration 0011) until a broker matches them with its own matcher: a Regx pattern is Go's
 * syntax, which PostgreSQL's regular expressions read differently. A node takes a batch of rows
 * (FOR UPDATE SKIP LOCKED: nodes never take the same row), reads the Regx bindings of their topics
 * in the same transaction (the bindings kiteq_publish reads: this database's table), matches them
 * in memory, writes the deliveries of the groups that match and deletes the rows.
 */
import type pg from "pg";
import type { Binding } from "../binding/binding.js";
import { type BindingRow, bindingsFromRows, type InvalidBindingRow } from "./bindings.js";
import { inTransaction } from "./db.js";
import { numberArray, textArray } from "./pg-arrays.js";

/** The oldest messages waiting for a Regx match, locked for this transaction. */
export const TAKE_REGX_ROUTING = `
SELECT message_pk, topic, message_type, owed_groups FROM regx_routing
 ORDER BY message_pk LIMIT $1 FOR UPDATE SKIP LOCKED`;

/**
 * The Regx bindings of some topics, as stored (each row is checked by bindingsFromRows: one row
 * that is not valid must not stop the others).
 */
export const REGX_BINDINGS_OF_TOPICS = `
SELECT group_id, topic, message_type, bind_type, version, watermark, persistent FROM bindings
 WHERE bind_type = 1 AND topic = ANY ($1::text[])
 ORDER BY topic, group_id, message_type`;

/**
 * Retention: forget the messages that waited since before `before` (their day is being dropped),
 * oldest first, a batch at a time (regx_routing_stored_idx).
 */
export const FORGET_REGX_ROUTING_BEFORE = `
DELETE FROM regx_routing WHERE message_pk IN (
  SELECT message_pk FROM regx_routing WHERE message_stored_at < $1 ORDER BY message_stored_at LIMIT $2)`;

/**
 * Deliveries for the (message, group) pairs matched ($1, $2), from the rows taken ($3), which are
 * deleted; one NOTIFY when a delivery was written. A group already owed the message (a Direct or
 * Fanout binding of the same group) keeps its delivery.
 */
export const ROUTE_REGX_DELIVERIES = `
WITH pairs AS (
  SELECT * FROM unnest($1::int8[], $2::text[]) AS p(message_pk, group_id)
), dl AS (
  INSERT INTO deliveries (message_pk, group_id, message_stored_at, topic, next_attempt_at, expires_at, deliver_limit)
  SELECT q.message_pk, p.group_id, q.message_stored_at, q.topic, q.next_attempt_at, q.expires_at, q.deliver_limit
    FROM pairs p JOIN regx_routing q ON q.message_pk = p.message_pk
   ORDER BY q.message_pk, p.group_id
  ON CONFLICT DO NOTHING
  RETURNING 1
), gone AS (
  DELETE FROM regx_routing WHERE message_pk = ANY ($3::int8[])
), wake AS (SELECT pg_notify('kiteq_due', '') FROM (SELECT 1 FROM dl LIMIT 1) AS any_row)
SELECT (SELECT count(*) FROM dl)::int AS n, (SELECT count(*) FROM wake) AS notified`;

/** What one routing batch did. */
export interface RegxRoutingBatch {
  /** Messages taken (and now routed). */
  messages: number;
  /** Deliveries written. */
  deliveries: number;
}

/**
 * Route up to `limit` waiting messages: `matcherFor` turns the Regx bindings of their topics into
 * the groups a message of a topic and type is owed (the broker's matcher, Go's syntax); a row that
 * is not a valid binding matches nothing and is told to `onInvalid`. A group kiteq_publish
 * already owed the message (a Direct or Fanout binding) gets nothing more.
 */
export async function routeRegxBatch(
  pool: pg.Pool,
  limit: number,
  matcherFor: (regx: readonly Binding[]) => (topic: string, messageType: string) => readonly string[],
  onInvalid?: (row: InvalidBindingRow) => void,
): Promise<RegxRoutingBatch> {
  return inTransaction(pool, async (c) => {
    const { rows } = await c.query<{
      message_pk: string;
      topic: string;
      message_type: string;
      owed_groups: string[] | null;
    }>(TAKE_REGX_ROUTING, [limit]);
    if (rows.length === 0) return { messages: 0, deliveries: 0 };
    const { rows: bound } = await c.query<BindingRow>(REGX_BINDINGS_OF_TOPICS, [
      textArray([...new Set(rows.map((r) => r.topic))]),
    ]);
    const groupsFor = matcherFor(bindingsFromRows(bound, onInvalid));
    const pks: number[] = [];
    const groups: string[] = [];
    for (const r of rows) {
      for (const g of groupsFor(r.topic, r.message_type)) {
        if (r.owed_groups?.includes(g)) continue;
        pks.push(Number(r.message_pk));
        groups.push(g);
      }
    }
    const { rows: done } = await c.query<{ n: number }>(ROUTE_REGX_DELIVERIES, [
      numberArray(pks),
      textArray(groups),
      numberArray(rows.map((r) => Number(r.message_pk))),
    ]);
    return { messages: rows.length, deliveries: done[0]!.n };
  });
}

/** Retention: delete the rows waiting since before `before` (see FORGET_REGX_ROUTING_BEFORE). */
export async function forgetRegxRoutingBefore(pool: pg.Pool, before: Date, batch: number): Promise<number> {
  let n = 0;
  for (;;) {
    const { rowCount } = await pool.query(FORGET_REGX_ROUTING_BEFORE, [before, batch]);
    n += rowCount ?? 0;
    if ((rowCount ?? 0) < batch) return n;
  }
}
