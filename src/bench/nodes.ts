/**
 * Several broker nodes on one database (issue 6, `--nodes 1,2,3` of the publish and e2e suites):
 * N broker child processes on the suite's embedded PostgreSQL, static registry, each with its own
 * port, data dir and node id, started one after the other. Producers and consumers are spread
 * round-robin over the nodes (connection i on node i mod N). On a machine with few cores the
 * nodes share the CPU with PostgreSQL and the load: more nodes need not mean more throughput.
 */
import path from "node:path";
import { type BrokerChild, startBrokerChild } from "./broker-child.js";
import type { BenchEnv } from "./environment.js";
import { intList, UsageError } from "./flags.js";

/** The `--nodes` flag every multi-node suite takes. */
export const NODES_FLAG = {
  nodes: {
    default: "1",
    help: "broker node counts on the same PostgreSQL, e.g. 1,2,3 (static registry; a run per count)",
  },
} as const;

/** Most nodes one run starts (each a Node.js process and a pool of 10 PostgreSQL connections). */
const MAX_NODES = 16;

/** Parse `--nodes`. */
export function nodeCounts(raw: string): number[] {
  const list = intList("nodes", raw);
  if (list.some((n) => n > MAX_NODES)) throw new UsageError(`--nodes: at most ${MAX_NODES} nodes`);
  return list;
}

/** Peak RSS of one node, for the report. */
export interface NodeRss {
  nodes: number;
  nodeId: string;
  pid: number;
  port: number;
  peakRssKb: number | null;
}

/** N running broker nodes. */
export interface BrokerNodes {
  readonly brokers: readonly BrokerChild[];
  /** Their ports, node 0 first. */
  readonly ports: readonly number[];
  /** Peak RSS of each node (read while they run). */
  peakRss(): NodeRss[];
  /** Stop every node (graceful, in parallel). Safe to call twice. */
  stop(): Promise<void>;
}

/** The node id of node `i` (0-based). */
export const nodeIdOf = (i: number) => `bench-node-${i + 1}`;

/**
 * Start `count` brokers on `dbUrl`, one after the other. Every broker (also one still starting)
 * is stopped by the environment's cleanup, so failures and SIGINT leave no process behind.
 */
export async function startBrokerNodes(
  env: BenchEnv,
  options: { dbUrl: string; count: number; label: string },
): Promise<BrokerNodes> {
  const brokers: BrokerChild[] = [];
  const starting = new Set<() => Promise<void>>();
  const stop = async () => {
    await Promise.all([...starting].map((kill) => kill()));
    await Promise.all(brokers.map((b) => b.stop()));
  };
  env.defer(stop);
  for (let i = 0; i < options.count; i++) {
    // After a signal the cleanup has run: a broker started now would be left behind.
    if (env.closing) throw new Error(`environment closing${env.interrupted ? ` (${env.interrupted})` : ""}`);
    let kill: (() => Promise<void>) | undefined;
    const broker = await startBrokerChild({
      dbUrl: options.dbUrl,
      // --db is given, so the data dir holds no PostgreSQL; distinct anyway.
      dataDir: path.join(env.dir, `${options.label}-${options.count}n-${i + 1}`),
      nodeId: nodeIdOf(i),
      onSpawn: (k) => {
        kill = k;
        starting.add(k);
      },
    }).finally(() => {
      if (kill) starting.delete(kill);
    });
    brokers.push(broker);
  }
  return {
    brokers,
    ports: brokers.map((b) => b.port),
    peakRss: () =>
      brokers.map((b) => ({
        nodes: brokers.length,
        nodeId: b.nodeId ?? `${b.host}:${b.port}`,
        pid: b.pid,
        port: b.port,
        peakRssKb: b.peakRssKb() ?? null,
      })),
    stop,
  };
}

/** "130 MiB" (or "?"). */
export function formatRss(kb: number | null): string {
  return kb === null ? "?" : `${Math.round(kb / 1024)} MiB`;
}

/** One line per node count: `broker peak RSS, 2 nodes: bench-node-1 120 MiB, bench-node-2 118 MiB`. */
export function printPeakRss(rss: readonly NodeRss[]): void {
  const counts = [...new Set(rss.map((r) => r.nodes))];
  for (const n of counts) {
    const of = rss.filter((r) => r.nodes === n);
    const text =
      n === 1
        ? formatRss(of[0]?.peakRssKb ?? null)
        : of.map((r) => `${r.nodeId} ${formatRss(r.peakRssKb)}`).join(", ");
    console.log(`broker peak RSS${counts.length > 1 || n > 1 ? `, ${n} node(s)` : ""}: ${text}`);
  }
}

/** The highest peak RSS of all nodes (kB), or null. */
export function maxPeakRssKb(rss: readonly NodeRss[]): number | null {
  const known = rss.map((r) => r.peakRssKb).filter((kb): kb is number => kb !== null);
  return known.length === 0 ? null : Math.max(...known);
}
