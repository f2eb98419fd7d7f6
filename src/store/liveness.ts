/**
 * Liveness and cluster-wide maintenance, on PostgreSQL's session-level advisory locks:
 *
 * - every running node holds a lock keyed by its claimer id on a connection of its own; a process
 *   that dies closes its connections, and PostgreSQL frees the lock at that moment (issue 13);
 * - one node at a time holds the maintenance lock and runs the cluster-wide jobs (expiry,
 *   retention and partition upkeep, release of gone claimers; issue 11).
 *
 * The nodes table records under which server start (pg_postmaster_start_time) a node took its
 * lock, so a lock that vanished with a server restart is not taken for a death.
 */
import type pg from "pg";
import { BACKGROUND_BATCH } from "./deliveries.js";

type Queryable = pg.Pool | pg.PoolClient | pg.Client;

/** Advisory lock class of the liveness locks (two-int form: class, hashtext(claimer)). */
export const LIVENESS_LOCK_CLASS = 0x6b716c76; // "kqlv"
/** Advisory lock class of the maintenance lock (two-int form: class, 0). */
export const MAINTENANCE_LOCK_CLASS = 0x6b716d74; // "kqmt"

/**
 * Take this run's liveness lock (never waits: a claimer id is unique per run) and record it on the
 * node's row. Returns false when another session holds it. Run on the node's own connection.
 */
export async function takeLivenessLock(
  client: pg.Client,
  args: { nodeId: string; claimer: string; address: string; now: Date },
): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>({
    text: `WITH l AS (SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok)
           INSERT INTO nodes (node_id, address, started_at, heartbeat_at, stopped_at, claimer, lock_epoch)
           SELECT $3, $4, $5, $5, NULL, $2, pg_postmaster_start_time() FROM l WHERE l.ok
           ON CONFLICT (node_id) DO UPDATE
              SET heartbeat_at = $5, stopped_at = NULL, claimer = $2, lock_epoch = pg_postmaster_start_time()
           RETURNING true AS ok`,
    values: [LIVENESS_LOCK_CLASS, args.claimer, args.nodeId, args.address, args.now],
  });
  return rows.length > 0;
}

/** Try to become the maintenance node (never waits). Run on the node's own connection. */
export async function tryMaintenanceLock(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>({
    text: "SELECT pg_try_advisory_lock($1, 0) AS ok",
    values: [MAINTENANCE_LOCK_CLASS],
  });
  return rows[0]?.ok === true;
}

/** Give up the maintenance lock (a node stopping: another leads at once). */
export async function releaseMaintenanceLock(client: pg.Client): Promise<void> {
  await client.query({ text: "SELECT pg_advisory_unlock($1, 0)", values: [MAINTENANCE_LOCK_CLASS] });
}

/** A claimer that holds deliveries or check claims, and whether its node is alive by its lock. */
export interface ClaimerLiveness {
  claimer: string;
  /** Its liveness lock is held right now. */
  alive: boolean;
  /**
   * Its node recorded taking its lock under the server's current start: a missing lock then
   * means the process died (not that the server restarted under it).
   */
  lockedThisEpoch: boolean;
  /** The node's last heartbeat (null: no node row names this claimer). */
  heartbeatAt: Date | null;
}

/**
 * Every claimer holding deliveries or check claims, found by a skip scan of the claimed_by
 * indexes (one index descent per distinct claimer, whatever the backlog), with its lock state.
 */
export const CLAIMER_LIVENESS = `
WITH RECURSIVE dc(x) AS (
  (SELECT claimed_by COLLATE "C" FROM deliveries WHERE claimed_by IS NOT NULL ORDER BY claimed_by COLLATE "C" LIMIT 1)
  UNION ALL
  SELECT (SELECT claimed_by COLLATE "C" FROM deliveries
           WHERE claimed_by IS NOT NULL AND claimed_by COLLATE "C" > dc.x
           ORDER BY claimed_by COLLATE "C" LIMIT 1)
    FROM dc WHERE dc.x IS NOT NULL
), tc(x) AS (
  (SELECT claimed_by COLLATE "C" FROM pending_transactions WHERE claimed_by IS NOT NULL
    ORDER BY claimed_by COLLATE "C" LIMIT 1)
  UNION ALL
  SELECT (SELECT claimed_by COLLATE "C" FROM pending_transactions
           WHERE claimed_by IS NOT NULL AND claimed_by COLLATE "C" > tc.x
           ORDER BY claimed_by COLLATE "C" LIMIT 1)
    FROM tc WHERE tc.x IS NOT NULL
), claimers AS (
  SELECT x FROM dc WHERE x IS NOT NULL UNION SELECT x FROM tc WHERE x IS NOT NULL
), locks AS (
  SELECT objid FROM pg_locks
   WHERE locktype = 'advisory' AND granted AND classid = $1::int4::oid AND objsubid = 2
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT c.x AS claimer,
       EXISTS (SELECT 1 FROM locks WHERE locks.objid = hashtext(c.x)::oid) AS alive,
       coalesce(n.lock_epoch = pg_postmaster_start_time(), false) AS locked_this_epoch,
       n.heartbeat_at
  FROM claimers c
  LEFT JOIN nodes n ON n.claimer = c.x
 LIMIT 1000`;

/** The claimers holding work, with their liveness (see CLAIMER_LIVENESS). */
export async function claimerLiveness(db: Queryable): Promise<ClaimerLiveness[]> {
  const { rows } = await db.query({ text: CLAIMER_LIVENESS, values: [LIVENESS_LOCK_CLASS] });
  return rows.map((r) => ({
    claimer: r.claimer,
    alive: r.alive,
    lockedThisEpoch: r.locked_this_epoch,
    heartbeatAt: r.heartbeat_at,
  }));
}

/**
 * One batch of the takeover of a dead claimer: release up to $2 of its deliveries and check
 * claims (its exact id: the range [id, id || chr(1))), and wake every node with one NOTIFY each
 * when anything was released. Returns the counts.
 */
export const RELEASE_CLAIMER_BATCH = `
WITH d AS (
  SELECT ctid FROM deliveries
   WHERE claimed_by COLLATE "C" >= $1 AND claimed_by COLLATE "C" < ($1 || chr(1))
   LIMIT $2 FOR UPDATE SKIP LOCKED
), du AS (
  UPDATE deliveries SET claimed_by = NULL, lease_until = NULL WHERE ctid = ANY (ARRAY(SELECT ctid FROM d))
  RETURNING 1
), t AS (
  SELECT ctid FROM pending_transactions
   WHERE claimed_by COLLATE "C" >= $1 AND claimed_by COLLATE "C" < ($1 || chr(1))
   LIMIT $2 FOR UPDATE SKIP LOCKED
), tu AS (
  UPDATE pending_transactions SET claimed_by = NULL, lease_until = NULL WHERE ctid = ANY (ARRAY(SELECT ctid FROM t))
  RETURNING 1
), wake AS (
  SELECT pg_notify('kiteq_due', '') FROM (SELECT 1 FROM du LIMIT 1) AS any_delivery
  UNION ALL
  SELECT pg_notify('kiteq_tx', '') FROM (SELECT 1 FROM tu LIMIT 1) AS any_check
)
SELECT (SELECT count(*) FROM du)::int AS deliveries, (SELECT count(*) FROM tu)::int AS checks,
       (SELECT count(*) FROM wake)::int AS notified`;

/** Release everything `claimer` holds (batches until none is left); returns the counts. */
export async function releaseClaimer(
  db: Queryable,
  claimer: string,
): Promise<{ deliveries: number; checks: number }> {
  const total = { deliveries: 0, checks: 0 };
  for (;;) {
    const { rows } = await db.query<{ deliveries: number; checks: number }>({
      text: RELEASE_CLAIMER_BATCH,
      values: [claimer, BACKGROUND_BATCH],
    });
    const r = rows[0]!;
    total.deliveries += r.deliveries;
    total.checks += r.checks;
    if (r.deliveries < BACKGROUND_BATCH && r.checks < BACKGROUND_BATCH) return total;
  }
}

/**
 * Cancel the statements running under the given application names (this node's pools), from a
 * connection of its own: used when shutdown's grace period ran out. Returns how many.
 */
export async function cancelStatementsOf(
  db: Queryable,
  applicationNames: readonly string[],
): Promise<number> {
  const { rows } = await db.query<{ n: number }>({
    text: `SELECT count(*) FILTER (WHERE pg_cancel_backend(pid))::int AS n FROM pg_stat_activity
            WHERE application_name = ANY($1) AND pid <> pg_backend_pid() AND state = 'active'`,
    values: [applicationNames],
  });
  return rows[0]?.n ?? 0;
}
