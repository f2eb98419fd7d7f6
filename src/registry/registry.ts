import type { Binding } from "../binding/binding.js";

/** Events a registry reports to the broker node. */
export interface RegistryEvents {
  /** The complete current bindings of one group for one topic (empty list: group unbound). */
  bindingsChanged(topic: string, groupId: string, bindings: Binding[]): void;
  /** A broker node (ip:port) disappeared from the live set (crash, partition, session expiry). */
  serverGone(address: string): void;
  /** A broker node (ip:port) appeared in the live set. */
  serverJoined(address: string): void;
  /** Connection to the registry lost (true) or restored and re-registered (false). */
  outage(down: boolean): void;
}

/**
 * Where a broker node announces itself and learns bindings and the liveness of other nodes.
 * Two implementations: static (YAML file + bindings table, single node) and ZooKeeper
 * (KiteQ's own paths).
 */
export interface Registry {
  /** Announce this node (address ip:port) serving `topics`; resolves once registered. */
  start(address: string, topics: readonly string[], events: RegistryEvents): Promise<void>;
  /** All current bindings known to the registry (used at start to fill the bindings table). */
  listBindings(): Promise<Binding[]>;
  /** Live broker addresses (ip:port). */
  liveServers(): Promise<string[]>;
  /** True while this node is registered and its session is valid. */
  isRegistered(): boolean;
  /** Remove this node's registrations and close. */
  stop(): Promise<void>;
}
