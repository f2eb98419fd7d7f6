/**
 * Statements on the nodes table: which broker nodes run (or ran) against this database, for
 * operators; liveness for takeover comes from ZooKeeper and leases, not from here.
 */
import type pg from "pg";

/** Record a node (re)starting. */
export async function registerNode(db: pg.Pool, nodeId: string, address: string, now: Date): Promise<void> {
  await db.query(
    `INSERT INTO nodes (node_id, address, started_at, heartbeat_at, stopped_at) VALUES ($1, $2, $3, $3, NULL)
     ON CONFLICT (node_id) DO UPDATE SET address = $2, started_at = $3, heartbeat_at = $3, stopped_at = NULL`,
    [nodeId, address, now],
  );
}

/** A running node's periodic heartbeat. */
export async function heartbeatNode(db: pg.Pool, nodeId: string, now: Date): Promise<void> {
  await db.query("UPDATE nodes SET heartbeat_at = $2 WHERE node_id = $1", [nodeId, now]);
}

/** A node stopped cleanly. */
export async function markNodeStopped(db: pg.Pool, nodeId: string, now: Date): Promise<void> {
  await db.query("UPDATE nodes SET stopped_at = $2, heartbeat_at = $2 WHERE node_id = $1", [nodeId, now]);
}
