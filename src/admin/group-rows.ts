/**
 * The groups listing (GET /api/groups, `kiteq-pg groups`): each group's backlog, dead letters,
 * bindings, rates and consumers, most behind first. A running broker answers it from its sampler;
 * without one the CLI reads the same figures from the database (readGroupsFromStore): the
 * backlog and dead letters are the store's, and rates, consumers and deliveries in flight are
 * what the live nodes' heartbeats wrote to the nodes table (every 5 s).
 */
import type pg from "pg";
import { type Binding, bindTypeName } from "../binding/binding.js";
import { listBindings } from "../store/bindings.js";
import { DEAD_LETTER_COUNT_CAP, listNodes } from "../store/groups.js";
import { shardedCountDeadLetters, shardedGroupBacklogs } from "../store/sharded-history.js";
import { type ClusterView, clusterView, heldByGroup } from "./cluster.js";
import type { GroupRates } from "./sampler.js";

/** A group's store figures, as the sampler or the database read them. */
export interface GroupFigures {
  owed: number;
  oldestOwedAgeSeconds: number;
  inFlight: number;
  deadLetters: number;
}

/** One binding as the API shows it. */
export function bindingJson(b: Binding) {
  return {
    topic: b.topic,
    messageType: b.messageType,
    bindType: bindTypeName(b.bindType),
    watermark: b.watermark,
    persistent: b.persistent,
  };
}

const ZERO_RATES: GroupRates = { delivered: 0, acked: 0, nacked: 0, deadLettered: 0, redelivered: 0 };

/**
 * One group of the listing. `nodeIds`: nodes listed with 0 consumers when they report none for
 * the group (the answering node; from the database, every live node).
 */
export function groupRow(
  groupId: string,
  g: GroupFigures | undefined,
  view: ClusterView,
  bindings: readonly Binding[],
  nodeIds: readonly string[],
) {
  const consumers: Record<string, number> = {};
  for (const id of nodeIds) consumers[id] = 0;
  return {
    groupId,
    bindings: bindings.filter((b) => b.groupId === groupId).map(bindingJson),
    owed: g?.owed ?? 0,
    inFlight: g?.inFlight ?? 0,
    oldestOwedAgeSeconds: g?.oldestOwedAgeSeconds ?? 0,
    deadLetters: g?.deadLetters ?? 0,
    /** deadLetters is the count's cap: there are at least that many. */
    deadLettersCapped: (g?.deadLetters ?? 0) >= DEAD_LETTER_COUNT_CAP,
    rates: view.groupRates.get(groupId) ?? { ...ZERO_RATES },
    consumers: { ...consumers, ...view.consumers.get(groupId) },
  };
}

/** A row of the listing. */
export type GroupRow = ReturnType<typeof groupRow>;

/** Most behind first (oldest owed), then by name. */
export function sortGroupRows(rows: GroupRow[]): GroupRow[] {
  return rows.sort(
    (a, b) => b.oldestOwedAgeSeconds - a.oldestOwedAgeSeconds || a.groupId.localeCompare(b.groupId),
  );
}

/** The listing read from the database alone (no broker answering): the shape of GET /api/groups. */
export async function readGroupsFromStore(pool: pg.Pool, shards: readonly pg.Pool[], now: Date) {
  const [bindings, nodes] = await Promise.all([listBindings(pool), listNodes(pool)]);
  const view = clusterView(nodes, null, now.getTime());
  const named = new Set([
    ...bindings.map((b) => b.groupId),
    ...view.consumers.keys(),
    ...view.groupRates.keys(),
  ]);
  const backlog = await shardedGroupBacklogs(shards, [...named]);
  const ids = [...new Set([...named, ...backlog.map((b) => b.groupId)])];
  const dead = await shardedCountDeadLetters(shards, ids);
  const held = heldByGroup(nodes, now.getTime());
  const figures = new Map<string, GroupFigures>();
  for (const b of backlog) {
    figures.set(b.groupId, {
      owed: b.owed,
      oldestOwedAgeSeconds:
        b.oldestDue === null ? 0 : Math.max(0, (now.getTime() - b.oldestDue.getTime()) / 1000),
      inFlight: 0,
      deadLetters: 0,
    });
  }
  for (const id of ids) {
    const f = figures.get(id) ?? { owed: 0, oldestOwedAgeSeconds: 0, inFlight: 0, deadLetters: 0 };
    f.inFlight = held.get(id) ?? 0;
    f.deadLetters = dead.get(id) ?? 0;
    figures.set(id, f);
  }
  const live = [...view.nodes.keys()];
  return {
    sampledAt: now,
    ratesScope: "cluster",
    consumersScope: "cluster",
    /** Read from the database: rates and consumers as the live nodes' last heartbeats said. */
    source: "database",
    liveNodes: live.length,
    groups: sortGroupRows(ids.map((id) => groupRow(id, figures.get(id), view, bindings, live))),
  };
}
