/**
 * The `claim` sub-measure of `bench e2e`: how long claimDueDeliveries takes for a batch with a
 * large history behind it, at a small and a large number of deliveries owed. The history is a
 * bench fixture written straight through the store's pool with generate_series (each message
 * with received, delivered and acked rows, like a finished one); the owed deliveries are kept at
 * a constant count by replacing each claimed batch, as acks and new publishes would.
 * The fixture SQL lives here, not in src/store: it is no statement the broker runs.
 */
import type pg from "pg";
import { claimDueDeliveries } from "../store/deliveries.js";
import type { BenchEnv } from "./environment.js";
import type { Progress } from "./output.js";
import { type LatencySummary, nowMs, round, Samples } from "./stats.js";

const GROUP = "bench-claim";

/** Figures of one owed size. */
export interface ClaimFigures {
  owed: number;
  batch: number;
  claims: number;
  rowsPerClaim: number;
  claimMs: LatencySummary;
}

/** Result of the claim measure. */
export interface ClaimReport {
  historyMessages: number;
  historyEventRows: number;
  fillSeconds: number;
  sizes: ClaimFigures[];
  /** p50 at the largest owed size over p50 at the smallest (about 1 = flat). */
  p50Ratio: number;
}

const INSERT_HISTORY_MESSAGES = `
INSERT INTO messages (message_id, topic, message_type, group_id, "commit", expires_at, deliver_limit,
                      created_at, stored_at, properties, snappy, body_is_string, body)
SELECT md5(i::text), 'bench-claim', 'bench', 'bench-producer', true, $1::timestamptz + interval '7 days', 100,
       $1::timestamptz - ($2::int - i) * interval '1 millisecond',
       $1::timestamptz - ($2::int - i) * interval '1 millisecond', NULL, false, false, $3::bytea
  FROM generate_series(1, $2::int) AS i`;

const INSERT_HISTORY_EVENTS = `
INSERT INTO message_events (message_pk, kind, at, group_id, node_id, attempt)
SELECT m.id, k.kind::message_event_kind, m.stored_at + k.off,
       CASE WHEN k.kind = 'received' THEN NULL ELSE 'bench-done' END, 'bench',
       CASE WHEN k.kind = 'received' THEN NULL ELSE 1 END
  FROM messages m
 CROSS JOIN (VALUES ('received', interval '0'), ('delivered', interval '1 ms'), ('acked', interval '2 ms'))
         AS k(kind, off)`;

const INSERT_OWED = `
INSERT INTO deliveries (message_pk, group_id, message_stored_at, topic, next_attempt_at, expires_at, deliver_limit)
SELECT id, $1, stored_at, topic, $2::timestamptz - interval '1 hour' + id * interval '1 microsecond',
       expires_at, deliver_limit
  FROM messages WHERE id >= $3 AND id < $4
ON CONFLICT DO NOTHING`;

/** Fill the history, then time claims at each owed size. */
export async function measureClaim(
  env: BenchEnv,
  options: { historyMessages: number; owed: number[]; batch: number; repeats: number; bodySize: number },
  progress: Progress,
): Promise<ClaimReport> {
  const { pool } = await env.kiteqDatabase("bench_claim");
  const n = options.historyMessages;
  progress.note(`claim: writing ${n.toLocaleString("en-US")} messages of history (x3 event rows)`);
  const fillStart = nowMs();
  const now = new Date();
  await pool.query(INSERT_HISTORY_MESSAGES, [now, n, Buffer.alloc(options.bodySize, 0x78)]);
  await pool.query(INSERT_HISTORY_EVENTS);
  await pool.query("ANALYZE messages");
  await pool.query("ANALYZE message_events");
  const fillSeconds = round((nowMs() - fillStart) / 1000, 1);
  const { rows } = await pool.query<{ lo: number; events: number }>(
    "SELECT min(id) AS lo, (SELECT count(*) FROM message_events)::int AS events FROM messages",
  );
  const { lo, events } = rows[0]!;
  const sizes: ClaimFigures[] = [];
  for (const owed of options.owed) {
    if (owed + options.batch * options.repeats > n) {
      progress.note(`claim: skipping ${owed} owed: needs more than ${n} messages of history`);
      continue;
    }
    sizes.push(await timeClaims(pool, { ...options, owed, lo }, progress));
  }
  const first = sizes[0]?.claimMs.p50 ?? 0;
  const last = sizes.at(-1)?.claimMs.p50 ?? 0;
  return {
    historyMessages: n,
    historyEventRows: events,
    fillSeconds,
    sizes,
    p50Ratio: first > 0 ? round(last / first, 2) : 0,
  };
}

async function timeClaims(
  pool: pg.Pool,
  o: { owed: number; batch: number; repeats: number; lo: number },
  progress: Progress,
): Promise<ClaimFigures> {
  const base = new Date();
  await pool.query("TRUNCATE deliveries");
  let next = o.lo + o.owed;
  await pool.query(INSERT_OWED, [GROUP, base, o.lo, next]);
  await pool.query("VACUUM ANALYZE deliveries");
  const samples = new Samples();
  let rowsTotal = 0;
  let done = 0;
  progress.track(`claim, ${o.owed} owed`, o.repeats, () => done);
  try {
    for (let r = 0; r < o.repeats; r++) {
      const now = new Date();
      const t0 = nowMs();
      const claimed = await claimDueDeliveries(pool, {
        groups: [GROUP],
        limits: [o.batch],
        now,
        claimer: "bench",
        leaseUntil: new Date(now.getTime() + 60_000),
      });
      samples.add(nowMs() - t0);
      rowsTotal += claimed.length;
      // Untimed: the claimed batch is acked (deleted) and as many new deliveries come in.
      await pool.query("DELETE FROM deliveries WHERE group_id = $1 AND message_pk = ANY($2::bigint[])", [
        GROUP,
        claimed.map((c) => c.messagePk),
      ]);
      await pool.query(INSERT_OWED, [GROUP, base, next, next + claimed.length]);
      next += claimed.length;
      done++;
    }
  } finally {
    progress.end();
  }
  return {
    owed: o.owed,
    batch: o.batch,
    claims: o.repeats,
    rowsPerClaim: round(rowsTotal / o.repeats, 1),
    claimMs: samples.summary(),
  };
}
