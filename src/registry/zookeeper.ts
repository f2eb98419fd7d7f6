/**
 * The ZooKeeper registry, in KiteQ's own layout (zk-paths.ts):
 *
 * - `/kiteq/server/{topic}/{ip:port}` ephemeral, one per served topic;
 * - `/kiteq/alive_servers/{ip:port}` ephemeral; `/kiteq/all_servers/{ip:port}` persistent;
 * - nothing under `/kiteq/pub`: that path belongs to the producers (kiteq-client-go's
 *   PublishTopics writes `/kiteq/pub/{topic}/{groupId}/{host}` itself). What the broker needs
 *   about its connected producers (2PC check-backs) it keeps in memory (src/tx/producers.ts);
 * - watches `/kiteq/sub/{topic}` (children `{groupId}-bind`, data a JSON array of bindings) for
 *   every served topic, and `/kiteq/alive_servers` (zk-watch.ts). start() reports what is
 *   already there as events too (bindings, other live brokers); this node itself is never
 *   reported as joined or gone, but is listed by liveServers().
 *
 * Sessions: on disconnect, outage(true) is reported (and logged) once and isRegistered() turns
 * false. The library reconnects by itself; when the same session comes back everything is
 * re-checked and re-read, then outage(false). When the session expired (or is lost without the
 * library saying so: the servers refuse it, or no connection for a whole session timeout:
 * zk-connect.ts's onLostSession), a new client is
 * connected (bounded attempts, retried with backoff until stop()), every node re-created (a
 * leftover ephemeral node of the old session is replaced), the watches re-armed, then
 * outage(false).
 *
 * Session timeout: a broker node passes its registry URL's (`zk://...?timeout=`; 30 s when the
 * URL gives none: config/values.ts); this class's own default, when none is passed, is 6 s. A
 * crashed broker's nodes vanish about that long after the crash, but takeover does not wait for
 * it: a dead node loses its PostgreSQL liveness lock at once.
 */
import zookeeper, { type Client } from "node-zookeeper-client";
import { type Binding, bindingsToJson, parseBindingsJson, type RefusedPattern } from "../binding/binding.js";
import { ErrorCode, KiteqError, toKiteqError } from "../errors.js";
import { type Logger, silentLogger } from "../log.js";
import type { Registry, RegistryEvents } from "./registry.js";
import { abandonClient, closeZooKeeper, connectZooKeeper, onLostSession, parseZkUrl } from "./zk-connect.js";
import {
  isSessionExpired,
  type ZkOpOptions,
  zkCreate,
  zkEnsurePath,
  zkExists,
  zkGetChildren,
  zkGetData,
  zkRemove,
} from "./zk-ops.js";
import {
  ALIVE_SERVERS_PATH,
  aliveServerPath,
  allServerPath,
  bindPath,
  groupOfBindNode,
  isServerAddress,
  SUB_ROOT_PATH,
  serverPath,
  storeMarkerPath,
  subTopicPath,
} from "./zk-paths.js";
import { logRefusedPatterns, ZkWatches } from "./zk-watch.js";

export { parseZkUrl, type ZkUrl } from "./zk-connect.js";

/** Default session timeout (see the module comment). */
export const DEFAULT_ZK_SESSION_TIMEOUT_MS = 6_000;
/** Default bound of one connect attempt. */
export const DEFAULT_ZK_CONNECT_TIMEOUT_MS = 5_000;

/** Options of {@link ZooKeeperRegistry}. */
export interface ZooKeeperRegistryOptions {
  /** `zk://h:p,h:p[/chroot]` or `h:p,h:p[/chroot]`. */
  connectString: string;
  /** Default {@link DEFAULT_ZK_SESSION_TIMEOUT_MS}; the server clamps it to its min/max. */
  sessionTimeoutMs?: number;
  /** Bound of one connect attempt; default {@link DEFAULT_ZK_CONNECT_TIMEOUT_MS}. */
  connectTimeoutMs?: number;
  /** Extra connect attempts in start() before it fails with RegistryFailed; default 2. */
  startRetries?: number;
  /** Bound of one ZooKeeper operation; default max(sessionTimeoutMs, 5 s). */
  operationTimeoutMs?: number;
  logger?: Logger;
  /** The store whose subscriptions ZooKeeper holds: written back to a ZooKeeper that lost them. */
  store?: RegistryStore;
}

/** What the registry needs of the store to give a new or wiped ZooKeeper its subscriptions back. */
export interface RegistryStore {
  /** A stable id of the store (shard 0's uuid). */
  storeId: string;
  /** The bindings the store mirrored from ZooKeeper. */
  mirroredBindings(): Promise<Binding[]>;
}

/** Backoff between new-session attempts after an expiry: from 0.5 s doubling up to 10 s. */
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10_000;

/** {@link Registry} on ZooKeeper with KiteQ's paths. */
export class ZooKeeperRegistry implements Registry {
  private readonly connectString: string;
  private readonly sessionTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly startRetries: number;
  private readonly op: ZkOpOptions;
  private logger: Logger;

  private client: Client | undefined;
  private readonly expired = new WeakSet<Client>();
  private address = "";
  private topics: readonly string[] = [];
  private events: RegistryEvents | undefined;
  private watches: ZkWatches | undefined;

  private started = false;
  /** Registered at least once (stop() says "left ZooKeeper" only then). */
  private wasRegistered = false;
  private stopping = false;
  private registered = false;
  private outageReported = false;
  private reconciling: Promise<void> | undefined;
  private reconcileAgain = false;
  private stopLostSessionWatch: (() => void) | undefined;
  private readonly abort = new AbortController();
  private readonly store: RegistryStore | undefined;

  constructor(options: ZooKeeperRegistryOptions) {
    this.store = options.store;
    this.connectString = parseZkUrl(options.connectString).connectString;
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? DEFAULT_ZK_SESSION_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_ZK_CONNECT_TIMEOUT_MS;
    this.startRetries = options.startRetries ?? 2;
    this.op = { timeoutMs: options.operationTimeoutMs ?? Math.max(this.sessionTimeoutMs, 5_000) };
    this.logger = (options.logger ?? silentLogger).child({ registry: "zookeeper", zk: this.connectString });
  }

  async start(address: string, topics: readonly string[], events: RegistryEvents): Promise<void> {
    if (this.started) throw new KiteqError(ErrorCode.Internal, "ZooKeeperRegistry.start called twice");
    if (!isServerAddress(address)) {
      throw new KiteqError(ErrorCode.ConfigInvalid, `broker address must be ip:port, got "${address}"`, {
        address,
      });
    }
    if (topics.length === 0) {
      throw new KiteqError(
        ErrorCode.ConfigInvalid,
        "the ZooKeeper registry needs at least one topic to serve",
      );
    }
    for (const topic of topics) subTopicPath(topic); // validates the name
    this.started = true;
    this.address = address;
    this.topics = [...new Set(topics)];
    this.events = events;
    // `address`, not `node`: a broker's logger carries its node id as `node` already, and a second
    // `node` key made its registry lines' JSON carry the key twice.
    this.logger = this.logger.child({ address });
    this.watches = new ZkWatches(this.topics, address, events, this.logger, this.op, (c) =>
      this.onExpired(c),
    );

    const client = await connectZooKeeper(this.connectString, {
      sessionTimeoutMs: this.sessionTimeoutMs,
      connectTimeoutMs: this.connectTimeoutMs,
      retries: this.startRetries,
      logger: this.logger,
      signal: this.abort.signal,
    });
    this.adopt(client);
    try {
      await this.registerAll(client);
      await this.watches.attach(client);
    } catch (err) {
      this.client = undefined;
      this.watches.detach();
      await closeZooKeeper(client);
      this.started = false;
      throw toKiteqError(err, { node: address }, ErrorCode.RegistryFailed);
    }
    this.registered = true;
    this.wasRegistered = true;
    this.logger.info(
      { topics: this.topics, sessionTimeoutMs: client.getSessionTimeout() },
      "registered in ZooKeeper",
    );
  }

  async listBindings(): Promise<Binding[]> {
    const client = this.requireClient();
    const topics = (await zkGetChildren(client, SUB_ROOT_PATH, undefined, this.op)) ?? [];
    const perTopic = await Promise.all(
      topics.map(async (topic) => {
        const children = (await zkGetChildren(client, subTopicPath(topic), undefined, this.op)) ?? [];
        const perGroup = await Promise.all(
          children.map(async (name) => {
            const groupId = groupOfBindNode(name);
            if (groupId === undefined) return [];
            const node = await zkGetData(client, `${subTopicPath(topic)}/${name}`, undefined, this.op);
            if (node === undefined) return [];
            try {
              const refused: RefusedPattern[] = [];
              const path = `${subTopicPath(topic)}/${name}`;
              const parsed = parseBindingsJson(node.data.toString("utf8"), refused);
              logRefusedPatterns(this.logger, path, refused);
              return parsed.filter((b) => b.groupId === groupId && b.topic === topic);
            } catch (err) {
              this.logger.warn(
                { topic, groupId, err: String(err) },
                "ignoring malformed bindings in ZooKeeper",
              );
              return [];
            }
          }),
        );
        return perGroup.flat();
      }),
    );
    return perTopic.flat();
  }

  async liveServers(): Promise<string[]> {
    const client = this.requireClient();
    return ((await zkGetChildren(client, ALIVE_SERVERS_PATH, undefined, this.op)) ?? []).sort();
  }

  isRegistered(): boolean {
    return this.registered;
  }

  /** Re-read `groupId`'s bindings now (see ZkWatches.syncGroup); false when not watching. */
  async syncGroup(groupId: string): Promise<boolean> {
    return (await this.watches?.syncGroup(groupId)) ?? false;
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.registered = false;
    this.stopLostSessionWatch?.();
    this.abort.abort();
    await this.reconciling?.catch(() => undefined);
    this.watches?.detach();
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) await closeZooKeeper(client);
    // Only a node that was registered left: one whose start failed (ZooKeeper unreachable) never joined.
    if (this.started && this.wasRegistered) this.logger.info("left ZooKeeper");
  }

  /** Make `client` the current one and follow its connection state. */
  private adopt(client: Client): void {
    this.client = client;
    client.on("disconnected", () => {
      if (client !== this.client || this.stopping) return;
      this.markDown("connection to ZooKeeper lost");
    });
    client.on("connected", () => {
      if (client !== this.client || this.stopping) return;
      this.kick();
    });
    client.on("expired", () => this.onExpired(client));
    // A session the servers refuse, or cut off for a whole session timeout: a new session (if
    // the old one was in fact still alive, its ephemeral nodes are replaced by the new
    // session's: ensureOwnEphemeral).
    this.stopLostSessionWatch?.();
    this.stopLostSessionWatch = onLostSession(
      client,
      this.sessionTimeoutMs,
      (why) => {
        if (client !== this.client || this.stopping) return;
        this.logger.warn({ why }, "ZooKeeper session lost; starting a new session");
        this.onExpired(client);
      },
      { connectString: this.connectString },
    );
  }

  private onExpired(client: Client): void {
    if (client !== this.client || this.stopping || this.expired.has(client)) return;
    this.expired.add(client);
    this.markDown("ZooKeeper session expired");
    this.kick();
  }

  private markDown(why: string): void {
    this.registered = false;
    if (this.outageReported) return;
    this.outageReported = true;
    this.logger.warn({ why }, "registry outage: not registered until ZooKeeper is back");
    this.emitOutage(true);
  }

  private markUp(): void {
    this.registered = true;
    if (!this.outageReported) return;
    this.outageReported = false;
    this.logger.info("registry outage over: registered again");
    this.emitOutage(false);
  }

  private emitOutage(down: boolean): void {
    try {
      this.events?.outage(down);
    } catch (err) {
      this.logger.error({ err }, "registry outage handler threw");
    }
  }

  /** Run {@link reconcile} (again, if one is running). */
  private kick(): void {
    if (this.reconciling !== undefined) {
      this.reconcileAgain = true;
      return;
    }
    this.reconciling = (async () => {
      do {
        this.reconcileAgain = false;
        await this.reconcile();
      } while (this.reconcileAgain && !this.stopping);
    })().finally(() => {
      this.reconciling = undefined;
    });
  }

  /**
   * Bring the registration back: a new session if the current one expired (retrying with
   * backoff until stop()), then re-create every node and re-read every watch. Returns early
   * while the current client is reconnecting by itself: its "connected" event kicks again.
   */
  private async reconcile(): Promise<void> {
    let delay = BACKOFF_START_MS;
    let failures = 0;
    while (!this.stopping) {
      let client = this.client;
      try {
        if (client === undefined || this.expired.has(client)) {
          if (client !== undefined) abandonClient(client);
          this.client = undefined;
          this.watches?.detach();
          client = await connectZooKeeper(this.connectString, {
            sessionTimeoutMs: this.sessionTimeoutMs,
            connectTimeoutMs: this.connectTimeoutMs,
            retries: 0,
            logger: this.logger,
            signal: this.abort.signal,
          });
          if (this.stopping) {
            await closeZooKeeper(client);
            return;
          }
          this.adopt(client);
          this.logger.info("new ZooKeeper session; registering again");
        }
        if (client.getState() !== zookeeper.State.SYNC_CONNECTED) return;
        await this.registerAll(client);
        await this.watches?.attach(client);
        if (
          client === this.client &&
          client.getState() === zookeeper.State.SYNC_CONNECTED &&
          !this.stopping
        ) {
          this.markUp();
        }
        return;
      } catch (err) {
        if (this.stopping) return;
        if (client !== undefined && isSessionExpired(err)) this.expired.add(client);
        failures++;
        const log = { err: String(err), attempt: failures, retryInMs: delay };
        if (failures === 1 || failures % 10 === 0)
          this.logger.warn(log, "ZooKeeper re-registration failed; retrying");
        else this.logger.debug(log, "ZooKeeper re-registration failed; retrying");
      }
      await this.sleep(delay);
      delay = Math.min(delay * 2, BACKOFF_MAX_MS);
    }
  }

  /** Create every node of this broker (idempotent; replaces leftovers of an older session). */
  private async registerAll(client: Client): Promise<void> {
    await zkCreate(client, allServerPath(this.address), this.op);
    for (const topic of this.topics) {
      await zkEnsurePath(client, subTopicPath(topic), this.op);
      await this.ensureOwnEphemeral(client, serverPath(topic, this.address));
    }
    await this.ensureOwnEphemeral(client, aliveServerPath(this.address));
    await this.restoreSubscriptions(client);
  }

  /**
   * A ZooKeeper with no record of this store (a new ensemble, or one restarted without its data)
   * has lost the store's persistent subscriptions too: they are written back from the store
   * (where no node is there) before the watches read /kiteq/sub, so that no group reads as
   * unbound: the mirror would delete its bindings, and every message published until its
   * consumers wrote them again would be owed to nobody. Subscriptions that are not persistent
   * are ephemeral nodes of their consumers' sessions, which write them again.
   */
  private async restoreSubscriptions(client: Client): Promise<void> {
    if (this.store === undefined) return;
    const marker = storeMarkerPath(this.store.storeId);
    if ((await zkExists(client, marker, undefined, this.op)) !== undefined) return;
    const byNode = new Map<string, Binding[]>();
    for (const b of await this.store.mirroredBindings()) {
      const path = bindPath(b.topic, b.groupId);
      byNode.set(path, [...(byNode.get(path) ?? []), b]);
    }
    const restored: string[] = [];
    for (const [path, list] of byNode) {
      if (!list.some((b) => b.persistent)) continue;
      if ((await zkCreate(client, path, { data: bindingsToJson(list), ...this.op })) === "created") {
        restored.push(path);
      }
    }
    await zkCreate(client, marker, this.op);
    if (restored.length === 0) {
      this.logger.info({ marker }, "ZooKeeper had no record of this store: recorded");
      return;
    }
    this.logger.warn(
      { restored: restored.length, nodes: restored.slice(0, 20), marker },
      "ZooKeeper had no record of this store (a new ensemble, or one that lost its data): its persistent subscriptions were written back from the store",
    );
  }

  /** Ephemeral node at `path` owned by `client`'s session, replacing one owned by anyone else. */
  private async ensureOwnEphemeral(client: Client, path: string): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if ((await zkCreate(client, path, { ephemeral: true, ...this.op })) === "created") return;
      const stat = await zkExists(client, path, undefined, this.op);
      if (stat === undefined) continue;
      if (stat.ephemeralOwner.equals(client.getSessionId())) return;
      this.logger.warn(
        { path, owner: stat.ephemeralOwner.toString("hex") },
        "replacing a registration held by another session (an earlier session of this node, or a duplicate address)",
      );
      await zkRemove(client, path, this.op);
    }
    throw new KiteqError(ErrorCode.RegistryFailed, `could not take over ZooKeeper node ${path}`, { path });
  }

  private requireClient(): Client {
    const client = this.client;
    if (client === undefined || client.getState() !== zookeeper.State.SYNC_CONNECTED) {
      throw new KiteqError(ErrorCode.RegistryFailed, "not connected to ZooKeeper", {
        zk: this.connectString,
      });
    }
    return client;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const signal = this.abort.signal;
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
