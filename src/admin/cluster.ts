/**
 * The whole cluster as the admin API shows it: each node writes a snapshot of its per-group
 * consumers and delivery counters (and its version) with its heartbeat (nodes.stats, the last two
 * snapshots); any node's API merges the live nodes' snapshots: consumers per node per group, and
 * rates from the deltas between each node's two snapshots. The answering node uses its own
 * in-memory figures (fresher than its last heartbeat).
 */
import type { GroupDeliveryCounters } from "../delivery/group-counters.js";
import type { NodeRow } from "../store/groups.js";
import type { NodeGroupStats, NodeStats } from "../store/nodes.js";
import { type GroupRates, livenessOf, type Rates } from "./sampler.js";

/** What a node's heartbeat snapshot is made of. */
export interface NodeStatsInput {
  at: number;
  version: string;
  published: number;
  pushed: number;
  counters: ReadonlyMap<string, Readonly<GroupDeliveryCounters>>;
  consumers: ReadonlyMap<string, number>;
  /** Deliveries held per group (claimed, not yet ended or released). */
  held: ReadonlyMap<string, number>;
}

/** A node's heartbeat snapshot (plain numbers, copied: the counters are live objects). */
export function buildNodeStats(i: NodeStatsInput): NodeStats {
  const groups: Record<string, NodeGroupStats> = {};
  const zero = (): NodeGroupStats => ({
    consumers: 0,
    pushed: 0,
    redelivered: 0,
    acked: 0,
    nacked: 0,
    deadLettered: 0,
  });
  for (const [g, c] of i.counters) {
    groups[g] = {
      consumers: 0,
      pushed: c.pushed,
      redelivered: c.redelivered,
      acked: c.acked,
      nacked: c.nacked,
      deadLettered: c.deadLettered,
    };
  }
  for (const [g, n] of i.consumers) {
    groups[g] ??= zero();
    groups[g].consumers = n;
  }
  for (const [g, n] of i.held) {
    groups[g] ??= zero();
    groups[g].held = n;
  }
  return { at: i.at, version: i.version, published: i.published, pushed: i.pushed, groups };
}

/** The answering node's own figures. */
export interface SelfView {
  nodeId: string;
  version: string;
  consumers: ReadonlyMap<string, number>;
  rates: { node: Rates; groups: ReadonlyMap<string, GroupRates> };
}

/** One node of the cluster view. */
export interface ClusterNode {
  nodeId: string;
  /** From its last snapshot (this node: its own); null when it wrote none. */
  version: string | null;
  /** Its publish and push rates (per second). */
  rates: Rates;
}

/** Consumers per node and rates summed over the live nodes. */
export interface ClusterView {
  /** Live nodes (heartbeat recent, not stopped) and the answering node. */
  nodes: Map<string, ClusterNode>;
  /** Every known node's version (live or not), from its last snapshot. */
  versions: Map<string, string | null>;
  /** Per group: connected consumers per live node. */
  consumers: Map<string, Record<string, number>>;
  /** Per group: rates summed over the live nodes. */
  groupRates: Map<string, GroupRates>;
  /** Publish and push rates summed over the live nodes. */
  rates: Rates;
}

const ZERO_RATES: GroupRates = { delivered: 0, acked: 0, nacked: 0, deadLettered: 0, redelivered: 0 };

function addRates(map: Map<string, GroupRates>, group: string, r: GroupRates): void {
  const t = map.get(group) ?? { ...ZERO_RATES };
  t.delivered += r.delivered;
  t.acked += r.acked;
  t.nacked += r.nacked;
  t.deadLettered += r.deadLettered;
  t.redelivered += r.redelivered;
  map.set(group, t);
}

/** Merge the nodes table's snapshots with the answering node's own figures (see module comment). */
export function clusterView(rows: readonly NodeRow[], self: SelfView | null, now: number): ClusterView {
  const view: ClusterView = {
    nodes: new Map(),
    versions: new Map(),
    consumers: new Map(),
    groupRates: new Map(),
    rates: { publishPerSecond: 0, pushPerSecond: 0 },
  };
  const addConsumers = (group: string, nodeId: string, n: number) => {
    const c = view.consumers.get(group) ?? {};
    c[nodeId] = n;
    view.consumers.set(group, c);
  };
  for (const row of rows) {
    view.versions.set(row.nodeId, row.stats?.current.version ?? null);
    if (row.nodeId === self?.nodeId || livenessOf(row, now) !== "alive") continue;
    const cur = row.stats?.current;
    if (cur === undefined) {
      view.nodes.set(row.nodeId, {
        nodeId: row.nodeId,
        version: null,
        rates: { publishPerSecond: 0, pushPerSecond: 0 },
      });
      continue;
    }
    const prev = row.stats?.previous ?? null;
    const secs = prev === null ? 0 : (cur.at - prev.at) / 1000;
    const per = (a: number, b: number | undefined) => (secs > 0 ? Math.max(0, a - (b ?? 0)) / secs : 0);
    const rates = {
      publishPerSecond: per(cur.published, prev?.published),
      pushPerSecond: per(cur.pushed, prev?.pushed),
    };
    view.nodes.set(row.nodeId, { nodeId: row.nodeId, version: cur.version, rates });
    view.rates.publishPerSecond += rates.publishPerSecond;
    view.rates.pushPerSecond += rates.pushPerSecond;
    for (const [group, g] of Object.entries(cur.groups)) {
      addConsumers(group, row.nodeId, g.consumers);
      const p = prev?.groups[group];
      addRates(view.groupRates, group, {
        delivered: per(g.pushed, p?.pushed),
        acked: per(g.acked, p?.acked),
        nacked: per(g.nacked, p?.nacked),
        deadLettered: per(g.deadLettered, p?.deadLettered),
        redelivered: per(g.redelivered, p?.redelivered),
      });
    }
  }
  // Without an answering node (the CLI reading the database), the live nodes' snapshots only.
  if (self === null) return view;
  view.versions.set(self.nodeId, self.version);
  view.nodes.set(self.nodeId, { nodeId: self.nodeId, version: self.version, rates: self.rates.node });
  view.rates.publishPerSecond += self.rates.node.publishPerSecond;
  view.rates.pushPerSecond += self.rates.node.pushPerSecond;
  for (const [group, n] of self.consumers) addConsumers(group, self.nodeId, n);
  for (const [group, r] of self.rates.groups) addRates(view.groupRates, group, r);
  return view;
}

/**
 * Deliveries held per group by the live nodes, as their last heartbeats said (no index of
 * deliveries names claimed_by, so the table cannot count them without reading the whole backlog).
 */
export function heldByGroup(rows: readonly NodeRow[], now: number): Map<string, number> {
  const held = new Map<string, number>();
  for (const n of rows) {
    if (livenessOf(n, now) !== "alive") continue;
    for (const [g, s] of Object.entries(n.stats?.current.groups ?? {}))
      held.set(g, (held.get(g) ?? 0) + (s.held ?? 0));
  }
  return held;
}
