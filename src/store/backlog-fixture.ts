/**
 * A synthetic production-size backlog, written set-based (for `bench backlog` and the plan tests
 * of issue 11): `owed` committed messages owed to one group and never acked, as many messages
 * already acked by it (full history: received, delivered, acked), owed/10 dead letters of it (received,
 * delivered, nacked, dead_lettered, and their dead_letters row) and owed/10 uncommitted 2PC
 * messages of the producing group. Receive times are spread 1 ms apart, ending at `now`.
 */
import type pg from "pg";

type Queryable = pg.Pool | pg.PoolClient;

/** What the fixture wrote, and names the measured statements use. */
export interface BacklogFixture {
  group: string;
  producerGroup: string;
  topic: string;
  owed: number;
  /** Claimer id holding the first `claimedByGone` owed rows, its lease run out (a node that is gone). */
  goneClaimer: string;
  claimedByGone: number;
  /** Receive time of the first and last message written. */
  from: Date;
  to: Date;
}

/** Rows per statement while building (memory of one statement stays small). */
const CHUNK = 100_000;

/**
 * One chunk: messages [$1, $2) of kind $3 ('owed' | 'acked' | 'dead' | 'pending'), their ids, history
 * rows and working rows. Message i is received at $4 - ($5 - i) ms.
 */
const BUILD_CHUNK = `
WITH g AS (
  SELECT i, nextval('messages_id_seq') AS id, md5($3 || i::text || $6) AS mid,
         $4::timestamptz - (($5 - i) * interval '1 millisecond') AS t
    FROM generate_series($1::int, $2::int - 1) AS i
), ids AS (
  INSERT INTO message_ids (message_id, message_pk, stored_at) SELECT mid, id, t FROM g
), m AS (
  INSERT INTO messages (id, message_id, topic, message_type, group_id, "commit", expires_at, deliver_limit,
                        created_at, stored_at, properties, snappy, body_is_string, body)
  SELECT id, mid, $7, 'backlog', $9, $3 <> 'pending', t + interval '6 days', 100, t, t,
         '[{"key":"k","value":"v"}]'::jsonb, false, true, convert_to(repeat('x', 100), 'UTF8')
    FROM g
), ev AS (
  INSERT INTO message_events (message_pk, kind, at, group_id, node_id, attempt)
  SELECT id, CASE WHEN $3 = 'pending' THEN 'uncommitted'::message_event_kind ELSE 'received'::message_event_kind END,
         t, NULL, 'fixture', NULL FROM g
  UNION ALL
  SELECT id, k.kind, t + k.after, $8, 'fixture', 1 FROM g
   CROSS JOIN (VALUES ('delivered'::message_event_kind, interval '1 millisecond'),
                      ('acked'::message_event_kind, interval '2 milliseconds')) AS k(kind, after)
   WHERE $3 = 'acked'
  UNION ALL
  SELECT id, k.kind, t + k.after, $8, 'fixture', 1 FROM g
   CROSS JOIN (VALUES ('delivered'::message_event_kind, interval '1 millisecond'),
                      ('nacked'::message_event_kind, interval '2 milliseconds'),
                      ('dead_lettered'::message_event_kind, interval '2.001 milliseconds')) AS k(kind, after)
   WHERE $3 = 'dead'
), dead AS (
  INSERT INTO dead_letters (message_pk, group_id, message_stored_at, dead_at, message_id, topic, message_type,
                            attempt, last_error)
  SELECT id, $8, t, t + interval '2.001 milliseconds', mid, $7, 'backlog', 1, 'refused' FROM g WHERE $3 = 'dead'
), dl AS (
  INSERT INTO deliveries (message_pk, group_id, message_stored_at, topic, next_attempt_at, expires_at, deliver_limit,
                          claimed_by, lease_until, claim_epoch)
  SELECT id, $8, t, $7, t, t + interval '6 days', 100,
         CASE WHEN i < $10 THEN $11 END, CASE WHEN i < $10 THEN $4::timestamptz - interval '1 minute' END,
         CASE WHEN i < $10 THEN 1 ELSE 0 END
    FROM g WHERE $3 = 'owed'
), tx AS (
  INSERT INTO pending_transactions (message_pk, message_stored_at, message_id, topic, group_id, next_check_at, stored_at)
  SELECT id, t, mid, $7, $9, t, t FROM g WHERE $3 = 'pending'
)
SELECT count(*)::int AS n FROM g`;

/** Build the backlog (see module comment); `onProgress` gets rows written so far. */
export async function buildBacklog(
  db: Queryable,
  args: { owed: number; now: Date; tag?: string; onProgress?: (written: number) => void },
): Promise<BacklogFixture> {
  const tag = args.tag ?? `bk${args.now.getTime().toString(36)}`;
  const fx: BacklogFixture = {
    group: `${tag}-consumers`,
    producerGroup: `${tag}-producers`,
    topic: `${tag}-topic`,
    owed: args.owed,
    goneClaimer: `${tag}-gone/1`,
    claimedByGone: Math.min(1000, Math.floor(args.owed / 10)),
    from: new Date(args.now.getTime() - (2 * args.owed + 2 * Math.ceil(args.owed / 10))),
    to: args.now,
  };
  // Acked history first (oldest), then the dead letters, the owed backlog, the uncommitted ones (newest).
  const parts: [kind: string, n: number][] = [
    ["acked", args.owed],
    ["dead", Math.ceil(args.owed / 10)],
    ["owed", args.owed],
    ["pending", Math.ceil(args.owed / 10)],
  ];
  const total = parts.reduce((a, [, n]) => a + n, 0);
  let offset = 0;
  let written = 0;
  for (const [kind, n] of parts) {
    for (let start = 0; start < n; start += CHUNK) {
      const end = Math.min(n, start + CHUNK);
      await db.query({
        text: BUILD_CHUNK,
        values: [
          start,
          end,
          kind,
          args.now,
          // Message i of this part is received (total - offset - i) ms before now.
          total - offset,
          tag,
          fx.topic,
          fx.group,
          fx.producerGroup,
          kind === "owed" ? fx.claimedByGone : 0,
          fx.goneClaimer,
        ],
      });
      written += end - start;
      args.onProgress?.(written);
    }
    offset += n;
  }
  return fx;
}

/** Refresh the planner's statistics of the tables the backlog filled. */
export async function analyzeBacklogTables(db: Queryable): Promise<void> {
  await db.query(
    "ANALYZE deliveries, pending_transactions, message_ids, messages, message_events, owed_counts, dead_letters",
  );
}

/** On-disk size of the store (bytes), for "database size per million messages". */
export async function databaseSize(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>("SELECT pg_database_size(current_database())::int8 AS n");
  return rows[0]?.n ?? 0;
}

/** Some rows of the backlog for the measured statements: owed, claimed by the gone node, pending. */
export async function sampleBacklog(
  db: Queryable,
  fx: BacklogFixture,
  n: number,
): Promise<{
  owedPks: number[];
  goneClaimedPks: number[];
  pendingIds: string[];
  pendingPks: number[];
  messageId: string;
}> {
  // Index paths only: by (group_id, next_attempt_at), by claimer, by (group_id, next_check_at).
  const owed = await db.query<{ message_pk: number }>({
    text: `SELECT message_pk FROM deliveries WHERE group_id = $1 AND claimed_by IS NULL
            ORDER BY next_attempt_at DESC LIMIT $2`,
    values: [fx.group, n],
  });
  const gone = await db.query<{ message_pk: number }>({
    text: `SELECT message_pk FROM deliveries WHERE claimed_by COLLATE "C" = $1 LIMIT $2`,
    values: [fx.goneClaimer, n],
  });
  const pending = await db.query<{ message_id: string; message_pk: number }>({
    text: "SELECT message_id, message_pk FROM pending_transactions WHERE group_id = $1 ORDER BY next_check_at LIMIT $2",
    values: [fx.producerGroup, n],
  });
  const one = await db.query<{ message_id: string }>({
    text: "SELECT message_id FROM messages WHERE id = $1 LIMIT 1",
    values: [owed.rows[0]?.message_pk ?? 0],
  });
  return {
    owedPks: owed.rows.map((r) => r.message_pk),
    goneClaimedPks: gone.rows.map((r) => r.message_pk),
    pendingIds: pending.rows.map((r) => r.message_id),
    pendingPks: pending.rows.map((r) => r.message_pk),
    messageId: one.rows[0]?.message_id ?? "",
  };
}
