/**
 * Statements on the nodes table: which broker nodes run (or ran) against this database, for
 * operators; liveness for takeover comes from ZooKeeper and leases, not from here.
 */
import type pg from "pg";

/** Record a node (re)starting. */
export async function registerNode(db: pg.Pool, nodeId: string, address: string, now: Date): Promise<void> {
  await db.query(
    `INSERT INTO nodes (node_id, address, started_at, heartbeat_at, stopped_at) VALUES ($1, $2, $3, $3, NULL)
     ON CONFLICT (node_id) DO UPDATE SET address = $2, started_at = $3, heartbeat_at = $3, stopped_at = NULL,
       stats = NULL`,
    [nodeId, address, now],
  );
}

/** How often a running node heartbeats (and writes its stats snapshot). */
export const HEARTBEAT_INTERVAL_MS = 5000;

/** One group on one node in a heartbeat snapshot: connected consumers and cumulative counters. */
export interface NodeGroupStats {
  consumers: number;
  /** Deliveries the node holds claimed (queued, in flight or awaiting their outcome write); absent before 0009. */
  held?: number;
  pushed: number;
  redelivered: number;
  acked: number;
  nacked: number;
  deadLettered: number;
}

/** What a node writes with its heartbeat (nodes.stats), for the whole cluster's admin API. */
export interface NodeStats {
  /** When it was taken (epoch ms, the node's clock). */
  at: number;
  /** The node's broker version (package.json). */
  version: string;
  /** Cumulative publishes stored and pushes since the node started. */
  published: number;
  pushed: number;
  groups: Record<string, NodeGroupStats>;
}

/** nodes.stats: the last snapshot and the one before it (rates are their deltas). */
export interface NodeStatsPair {
  current: NodeStats;
  previous: NodeStats | null;
}

/**
 * A running node's periodic heartbeat; with `stats`, its snapshot becomes nodes.stats' current
 * and the old current its previous (one primary-key update of a tiny table). Answers the
 * database's clock (epoch ms), which the node compares with its own (server/clock-skew.ts).
 */
export const HEARTBEAT_SQL = `
UPDATE nodes SET heartbeat_at = $2,
       stats = CASE WHEN $3::jsonb IS NULL THEN stats
                    ELSE jsonb_build_object('current', $3::jsonb, 'previous', stats->'current') END
 WHERE node_id = $1
RETURNING (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS database_ms`;

/**
 * A running node's periodic heartbeat, with its stats snapshot when given (see HEARTBEAT_SQL).
 * Returns the database's clock (epoch ms) as it wrote it; undefined when the node has no row.
 */
export async function heartbeatNode(
  db: pg.Pool | pg.PoolClient,
  nodeId: string,
  now: Date,
  stats?: NodeStats,
): Promise<number | undefined> {
  const { rows } = await db.query<{ database_ms: number }>({
    text: HEARTBEAT_SQL,
    values: [nodeId, now, stats === undefined ? null : JSON.stringify(stats)],
  });
  return rows[0]?.database_ms;
}

/** A node stopped cleanly. */
export async function markNodeStopped(db: pg.Pool, nodeId: string, now: Date): Promise<void> {
  await db.query("UPDATE nodes SET stopped_at = $2, heartbeat_at = $2 WHERE node_id = $1", [nodeId, now]);
}
