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

/** What takeLivenessLock found. */
export type LivenessLockResult =
  /** Taken; `wasDeclaredDead`: this run had been declared dead (its lock was gone for a while), now undeclared. */
  | { taken: true; wasDeclaredDead: boolean }
  /** Another session holds this run's lock (a claimer id is unique per run: never expected). */
  | { taken: false; heldBy: undefined }
  /** A run of the same node id is alive (holds its lock): this one must not start. */
  | { taken: false; heldBy: string };

/**
 * Take this run's liveness lock (never waits: a claimer id is unique per run) and record it on the
 * node's row. The claimer of the node's previous run, if it did not stop cleanly and its lock is
 * free (it died), is declared dead until `deadUntil`: whatever it still holds is free to claim at
 * once (the row is about to forget it). If that previous run still holds its lock, another live
 * process uses this node id: nothing is written (before, a second node started by mistake on the
 * same --bind declared the running one dead and took its row, even when it then failed to listen).
 * Run on the node's own connection.
 */
export async function takeLivenessLock(
  client: pg.Client,
  args: { nodeId: string; claimer: string; address: string; now: Date; deadUntil: Date },
): Promise<LivenessLockResult> {
  const { rows } = await client.query<{ taken: boolean; held_by: string | null; was_dead: boolean }>({
    text: `WITH l AS (SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok),
           prior AS (
             SELECT n.claimer,
                    EXISTS (SELECT 1 FROM pg_locks pl
                             WHERE pl.locktype = 'advisory' AND pl.granted AND pl.classid = $1::int4::oid
                               AND pl.objsubid = 2 AND pl.objid = hashtext(n.claimer)::oid
                               AND pl.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    ) AS alive
               FROM nodes n
              WHERE n.node_id = $3 AND n.claimer IS NOT NULL AND n.claimer <> $2 AND n.stopped_at IS NULL
           ),
           previous AS (
             INSERT INTO dead_claimers (claimer, declared_at, until)
             SELECT prior.claimer, $5, $6 FROM prior, l WHERE l.ok AND NOT prior.alive
             ON CONFLICT (claimer) DO UPDATE SET until = greatest(dead_claimers.until, EXCLUDED.until)
           ),
           -- This run itself declared dead while its lock was gone (its connection dropped): it
           -- holds the lock again, so its claims are its own again (it lets go of what it held).
           own AS (
             DELETE FROM dead_claimers WHERE claimer = $2 AND (SELECT ok FROM l) RETURNING 1
           ),
           ins AS (
             INSERT INTO nodes (node_id, address, started_at, heartbeat_at, stopped_at, claimer, lock_epoch)
             SELECT $3, $4, $5, $5, NULL, $2, pg_postmaster_start_time() FROM l
              WHERE l.ok AND NOT EXISTS (SELECT 1 FROM prior WHERE prior.alive)
             ON CONFLICT (node_id) DO UPDATE
                SET heartbeat_at = $5, stopped_at = NULL, claimer = $2, lock_epoch = pg_postmaster_start_time()
             RETURNING 1
           )
           SELECT EXISTS (SELECT 1 FROM ins) AS taken, (SELECT claimer FROM prior WHERE alive LIMIT 1) AS held_by,
                  EXISTS (SELECT 1 FROM own) AS was_dead`,
    values: [LIVENESS_LOCK_CLASS, args.claimer, args.nodeId, args.address, args.now, args.deadUntil],
  });
  const row = rows[0]!;
  if (row.taken) return { taken: true, wasDeclaredDead: row.was_dead };
  return { taken: false, heldBy: row.held_by ?? undefined };
}

/**
 * A clean stop, on the node's own connection before it closes (and frees the lock): the row says
 * stopped first, so no maintenance node takes the freed lock for a death.
 */
export async function markClaimerStopped(
  client: pg.Client,
  args: { nodeId: string; claimer: string; now: Date },
): Promise<void> {
  await client.query({
    text: "UPDATE nodes SET stopped_at = $3, heartbeat_at = $3 WHERE node_id = $1 AND claimer = $2",
    values: [args.nodeId, args.claimer, args.now],
  });
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
 * Every claimer that may hold work: the current run of each node not marked stopped and not yet
 * declared dead (the nodes table: a row per node), and each claimer holding check claims (a skip
 * scan of the pending_transactions claimed_by index: one descent per distinct claimer). With its
 * lock state. Deliveries have no claimed_by index (claims are HOT updates): a dead run's
 * deliveries are found by the claim itself, through dead_claimers.
 */
export const CLAIMER_LIVENESS = `
WITH RECURSIVE tc(x) AS (
  (SELECT claimed_by COLLATE "C" FROM pending_transactions WHERE claimed_by IS NOT NULL
    ORDER BY claimed_by COLLATE "C" LIMIT 1)
  UNION ALL
  SELECT (SELECT claimed_by COLLATE "C" FROM pending_transactions
           WHERE claimed_by IS NOT NULL AND claimed_by COLLATE "C" > tc.x
           ORDER BY claimed_by COLLATE "C" LIMIT 1)
    FROM tc WHERE tc.x IS NOT NULL
), claimers AS (
  SELECT claimer AS x FROM nodes
   WHERE claimer IS NOT NULL AND stopped_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM dead_claimers dc WHERE dc.claimer = nodes.claimer)
  UNION SELECT x FROM tc WHERE x IS NOT NULL
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

/** The claimers that may hold work, with their liveness (see CLAIMER_LIVENESS). */
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
 * Declare claimer $1 dead until $3: claims treat its deliveries as free from now on (and wake on
 * the NOTIFY), and one batch of up to $4 of its check claims is released (by their claimed_by
 * index). Returns how many check claims were released.
 */
export const DECLARE_CLAIMER_DEAD = `
WITH dead AS (
  INSERT INTO dead_claimers (claimer, declared_at, until) VALUES ($1, $2, $3)
  ON CONFLICT (claimer) DO UPDATE SET until = greatest(dead_claimers.until, EXCLUDED.until)
  RETURNING 1
), t AS (
  SELECT ctid FROM pending_transactions
   WHERE claimed_by COLLATE "C" >= $1 AND claimed_by COLLATE "C" < ($1 || chr(1))
   LIMIT $4 FOR UPDATE SKIP LOCKED
), tu AS (
  UPDATE pending_transactions SET claimed_by = NULL, lease_until = NULL WHERE ctid = ANY (ARRAY(SELECT ctid FROM t))
  RETURNING 1
), wake AS (
  SELECT pg_notify('kiteq_due', '') FROM dead
  UNION ALL
  SELECT pg_notify('kiteq_tx', '') FROM (SELECT 1 FROM tu LIMIT 1) AS any_check
)
SELECT (SELECT count(*) FROM tu)::int AS checks, (SELECT count(*) FROM wake)::int AS notified`;

/**
 * Declare `claimer` dead until `until` (see DECLARE_CLAIMER_DEAD) and release all its check
 * claims; returns how many check claims were released.
 */
export async function declareClaimerDead(
  db: Queryable,
  claimer: string,
  now: Date,
  until: Date,
): Promise<{ checks: number }> {
  let checks = 0;
  for (;;) {
    const { rows } = await db.query<{ checks: number }>({
      text: DECLARE_CLAIMER_DEAD,
      values: [claimer, now, until, BACKGROUND_BATCH],
    });
    checks += rows[0]!.checks;
    if (rows[0]!.checks < BACKGROUND_BATCH) return { checks };
  }
}

/**
 * Declare the current run of node $1 dead until $3 (a node that left the registry), unless it is
 * the caller's own run ($4), stopped cleanly, or alive by its liveness lock ($5: the lock class):
 * claims treat its deliveries as free at once. The lock check matters when a node restarts within
 * its old ZooKeeper session (a kill -9 and a start 2 s later, or a ZooKeeper outage): the old
 * session's removal then names the node's new, live run, which was declared dead before, left
 * out of the liveness checks for its whole life, and its next crash was taken over only by the
 * ZooKeeper session timeout (26 s) instead of its lock (< 1 s). Returns the claimers declared.
 */
export const DECLARE_NODE_DEAD = `
WITH dead AS (
  INSERT INTO dead_claimers (claimer, declared_at, until)
  SELECT claimer, $2, $3 FROM nodes
   WHERE node_id = $1 AND claimer IS NOT NULL AND claimer <> $4 AND stopped_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM pg_locks pl
                      WHERE pl.locktype = 'advisory' AND pl.granted AND pl.classid = $5::int4::oid
                        AND pl.objsubid = 2 AND pl.objid = hashtext(nodes.claimer)::oid
                        AND pl.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
  ON CONFLICT (claimer) DO UPDATE SET until = greatest(dead_claimers.until, EXCLUDED.until)
  RETURNING claimer
), wake AS (
  SELECT pg_notify('kiteq_due', '') FROM dead
)
SELECT dead.claimer, (SELECT count(*) FROM wake)::int AS notified FROM dead`;

/** Declare node `nodeId`'s current run dead (see DECLARE_NODE_DEAD); returns the claimers declared. */
export async function declareNodeDead(
  db: Queryable,
  args: { nodeId: string; now: Date; until: Date; except: string },
): Promise<string[]> {
  const { rows } = await db.query<{ claimer: string }>({
    text: DECLARE_NODE_DEAD,
    values: [args.nodeId, args.now, args.until, args.except, LIVENESS_LOCK_CLASS],
  });
  return rows.map((r) => r.claimer);
}

/**
 * Forget dead claimers whose window ended an hour ago and that no node row names any more (a
 * node's later run replaced it): the table stays a handful of rows.
 */
export const FORGET_DEAD_CLAIMERS = `
DELETE FROM dead_claimers d
 WHERE until < $1::timestamptz - interval '1 hour'
   AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.claimer = d.claimer)`;

/** See FORGET_DEAD_CLAIMERS; returns how many rows went. */
export async function forgetDeadClaimers(db: Queryable, now: Date): Promise<number> {
  const { rowCount } = await db.query({ text: FORGET_DEAD_CLAIMERS, values: [now] });
  return rowCount ?? 0;
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
