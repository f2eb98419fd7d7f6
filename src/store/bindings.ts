/**
 * Statements on the bindings table: the delivery engine's source of truth for who is owed what.
 * Every change sends NOTIFY kiteq_bindings so all nodes reload their matcher.
 */
import type pg from "pg";
import { type Binding, type BindType, createBinding } from "../binding/binding.js";
import { inTransaction } from "./db.js";

type Queryable = pg.Pool | pg.PoolClient;

/** Where a binding came from. */
export type BindingSource = "static" | "cli" | "zk";

/** A row of the bindings table that is not a valid binding (only a hand edit can write one). */
export interface InvalidBindingRow {
  groupId: string;
  topic: string;
  messageType: string;
  reason: string;
}

/**
 * Every binding (or those from `source`), in a stable order. A row that is not a valid binding
 * (bindings are checked where they enter, so only a hand-edited row) is left out and told to
 * `onInvalid`: one bad row must not cost every other binding (the broker's matcher, the admin
 * API, the CLI).
 */
export async function listBindings(
  db: Queryable,
  source?: BindingSource,
  onInvalid?: (row: InvalidBindingRow) => void,
): Promise<Binding[]> {
  const { rows } = await db.query<BindingRow>(
    `SELECT group_id, topic, message_type, bind_type, version, watermark, persistent
       FROM bindings WHERE $1::text IS NULL OR source = $1 ORDER BY topic, group_id, message_type`,
    [source ?? null],
  );
  return bindingsFromRows(rows, onInvalid);
}

/** A row of the bindings table, as the statements here select it. */
export interface BindingRow {
  group_id: string;
  topic: string;
  message_type: string;
  bind_type: number;
  version: string;
  watermark: number;
  persistent: boolean;
}

/** Rows as bindings; a row that is not a valid binding is left out and told to `onInvalid`. */
export function bindingsFromRows(
  rows: readonly BindingRow[],
  onInvalid?: (row: InvalidBindingRow) => void,
): Binding[] {
  const out: Binding[] = [];
  for (const r of rows) {
    try {
      out.push(
        createBinding({
          groupId: r.group_id,
          topic: r.topic,
          messageType: r.message_type,
          bindType: r.bind_type as BindType,
          version: r.version,
          watermark: r.watermark,
          persistent: r.persistent,
        }),
      );
    } catch (err) {
      onInvalid?.({
        groupId: r.group_id,
        topic: r.topic,
        messageType: r.message_type,
        reason: err instanceof Error ? err.message : String(err),
      });
    }
  }
  return out;
}

/**
 * Replace the bindings of (groupId, topic) that came from `source` with `bindings` (empty: remove
 * them), in one transaction, and notify every node.
 */
export async function replaceGroupTopicBindings(
  pool: pg.Pool,
  args: { groupId: string; topic: string; source: BindingSource; bindings: readonly Binding[]; now: Date },
): Promise<void> {
  await inTransaction(pool, async (c) => {
    await c.query("DELETE FROM bindings WHERE group_id = $1 AND topic = $2 AND source = $3", [
      args.groupId,
      args.topic,
      args.source,
    ]);
    await insertBindings(c, args.bindings, args.source, args.now);
    await c.query("SELECT pg_notify('kiteq_bindings', '')");
  });
}

/**
 * Make the bindings from `source` exactly `bindings` (the static YAML file at start and on change,
 * or a ZooKeeper resync), and notify every node.
 */
export async function replaceSourceBindings(
  pool: pg.Pool,
  source: BindingSource,
  bindings: readonly Binding[],
  now: Date,
): Promise<void> {
  await inTransaction(pool, async (c) => {
    await c.query("DELETE FROM bindings WHERE source = $1", [source]);
    await insertBindings(c, bindings, source, now);
    await c.query("SELECT pg_notify('kiteq_bindings', '')");
  });
}

/** Add or update one binding (CLI), and notify every node. */
export async function upsertBinding(
  pool: pg.Pool,
  b: Binding,
  source: BindingSource,
  now: Date,
): Promise<void> {
  await inTransaction(pool, async (c) => {
    await insertBindings(c, [b], source, now);
    await c.query("SELECT pg_notify('kiteq_bindings', '')");
  });
}

/** Remove the bindings of a group for a topic (all message types, or one); returns how many. */
export async function removeBindings(
  pool: pg.Pool,
  args: { groupId: string; topic: string; messageType?: string },
): Promise<number> {
  return inTransaction(pool, async (c) => {
    const { rowCount } = await c.query(
      `DELETE FROM bindings WHERE group_id = $1 AND topic = $2 AND ($3::text IS NULL OR message_type = $3)`,
      [args.groupId, args.topic, args.messageType ?? null],
    );
    await c.query("SELECT pg_notify('kiteq_bindings', '')");
    return rowCount ?? 0;
  });
}

async function insertBindings(c: pg.PoolClient, list: readonly Binding[], source: BindingSource, now: Date) {
  if (list.length === 0) return;
  await c.query(
    `INSERT INTO bindings (group_id, topic, message_type, bind_type, version, watermark, persistent, source, updated_at)
     SELECT *, $8, $9 FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::text[], $6::int[], $7::bool[])
     ON CONFLICT (group_id, topic, message_type) DO UPDATE
       SET bind_type = EXCLUDED.bind_type, version = EXCLUDED.version, watermark = EXCLUDED.watermark,
           persistent = EXCLUDED.persistent, source = EXCLUDED.source, updated_at = EXCLUDED.updated_at`,
    [
      list.map((b) => b.groupId),
      list.map((b) => b.topic),
      list.map((b) => b.messageType),
      list.map((b) => b.bindType),
      list.map((b) => b.version),
      list.map((b) => b.watermark),
      list.map((b) => b.persistent),
      source,
      now,
    ],
  );
}
