/**
 * Messages published with kiteq_publish (SQL) to a topic with Regx bindings wait in regx_routing
 * (migration 0011) until a broker matches them with its own matcher: a Regx pattern is Go's
 * syntax, which PostgreSQL's regular expressions read differently. A node takes a batch of rows
 * (FOR UPDATE SKIP LOCKED: nodes never take the same row), reads the Regx bindings of their topics
 * in the same transaction (the bindings kiteq_publish reads: this database's table), matches them
 * in memory, writes the deliveries of the groups that match and deletes the rows.
 */
import type pg from "pg";
import { type Binding, BindType } from "../binding/binding.js";
import { listBindings } from "./bindings.js";
import { inTransaction } from "./db.js";
import { numberArray, textArray } from "./pg-arrays.js";

/** The oldest messages waiting for a Regx match, locked for this transaction. */
export const TAKE_REGX_ROUTING = `
SELECT message_pk, topic, message_type FROM regx_routing ORDER BY message_pk LIMIT $1 FOR UPDATE SKIP LOCKED`;

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
 * the groups a message of a topic and type is owed (the broker's matcher, Go's syntax).
 */
export async function routeRegxBatch(
  pool: pg.Pool,
  limit: number,
  matcherFor: (regxBindings: readonly Binding[]) => (topic: string, messageType: string) => readonly string[],
): Promise<RegxRoutingBatch> {
  return inTransaction(pool, async (c) => {
    const { rows } = await c.query<{ message_pk: string; topic: string; message_type: string }>(
      TAKE_REGX_ROUTING,
      [limit],
    );
    if (rows.length === 0) return { messages: 0, deliveries: 0 };
    const topics = new Set(rows.map((r) => r.topic));
    const groupsFor = matcherFor(
      (await listBindings(c)).filter((b) => b.bindType === BindType.Regx && topics.has(b.topic)),
    );
    const pks: number[] = [];
    const groups: string[] = [];
    for (const r of rows) {
      for (const g of groupsFor(r.topic, r.message_type)) {
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
