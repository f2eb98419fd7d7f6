/**
 * Registry wiring of a broker node (issue 6): static (YAML file into the bindings table) or
 * ZooKeeper (KiteQ's paths; bindings mirrored into the table; dead nodes' claims released; see
 * zk-cluster.ts).
 */
import type pg from "pg";
import type { BrokerConfig } from "../config/types.js";
import type { Dispatcher } from "../delivery/dispatcher.js";
import type { Logger } from "../log.js";
import { syncRegistryFile } from "./static-registry.js";
import { startZooKeeperCluster } from "./zk-cluster.js";

/** What the registry wiring needs from the broker. */
export interface ClusterDeps {
  pool: pg.Pool;
  config: BrokerConfig;
  /** The address this node serves on (ip:port), known once listening. */
  address: string;
  /** Nodes that are gone are declared dead, and claims requested. */
  dispatcher: Pick<Dispatcher, "takeOverNode" | "requestClaim">;
  /**
   * Release the pending (2PC) transactions claimed by a node that is gone (any incarnation of
   * node id `nodeId`), so their checks are taken over at once. Optional until 2PC is wired.
   */
  releaseTransactionsOfNode?(nodeId: string): Promise<unknown>;
  /**
   * Whether this node runs the cluster-wide maintenance now: only that node releases the claims
   * of a node ZooKeeper reports gone (one node at a time; issue 11). Default: always.
   */
  isMaintenanceNode?(): boolean;
  /**
   * The store's id (shard 0's uuid): ZooKeeper records it, and a ZooKeeper without that record
   * (new, or restarted without its data) gets the store's persistent subscriptions back.
   */
  storeId?: string;
  log: Logger;
  /** Aborts a start still waiting for the registry (a signal during the node's startup). */
  signal?: AbortSignal;
}

/** The broker's view of its registry. */
export interface ClusterMembership {
  /**
   * With ZooKeeper: re-read `groupId`'s bindings there now and resolve once any change is in the
   * bindings table (true: something changed). A consumer that just wrote its bindings and
   * heartbeats learns by the answer that this node has them (see Broker.beforeHeartbeatReply).
   */
  syncGroup?(groupId: string): Promise<boolean>;
  /** With ZooKeeper: whether this node is registered there now. */
  isRegistered?(): boolean;
  stop(): Promise<void>;
}

/**
 * Start the configured registry; resolves once this node is registered (and, with ZooKeeper,
 * its bindings mirrored). With ZooKeeper unreachable it rejects with RegistryFailed after a
 * bounded wait (three connect attempts of 5 s).
 */
export async function startCluster(deps: ClusterDeps): Promise<ClusterMembership> {
  const { config, pool, log } = deps;
  if (config.registry.kind === "zookeeper") return startZooKeeperCluster(deps, config.registry);
  let unwatch: (() => void) | undefined;
  if (config.registry.file !== null) {
    unwatch = await syncRegistryFile(pool, config.registry.file, log);
  }
  return {
    stop: async () => unwatch?.(),
  };
}
