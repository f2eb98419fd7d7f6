/**
 * Watches of the ZooKeeper registry: the bindings of every served topic
 * (`/kiteq/sub/{topic}/{groupId}-bind`) and the live broker set (`/kiteq/alive_servers`).
 *
 * ZooKeeper watches fire once and say only "something changed", so each one triggers a re-read
 * that also re-arms it, and what is reported is the difference between that read and what was
 * last reported. The last-reported state outlives sessions: after a reconnect or a new session
 * everything is re-read and only real differences are reported (a group unbound during the
 * outage gets its empty list, a broker that died meanwhile its serverGone).
 */
import type { Client, Watcher } from "node-zookeeper-client";
import zookeeper from "node-zookeeper-client";
import { type Binding, bindingsToJson, parseBindingsJson, type RefusedPattern } from "../binding/binding.js";
import type { Logger } from "../log.js";
import type { RegistryEvents } from "./registry.js";
import { isSessionExpired, type ZkOpOptions, zkExists, zkGetChildren, zkGetData } from "./zk-ops.js";
import { ALIVE_SERVERS_PATH, bindPath, groupOfBindNode, subTopicPath } from "./zk-paths.js";

type Sink = Pick<RegistryEvents, "bindingsChanged" | "serverJoined" | "serverGone">;

/** Re-read delay after a failed refresh while the session still looks usable. */
const RETRY_MS = 1_000;

/** Binding and liveness watches; one instance per registry, re-attached to each new client. */
export class ZkWatches {
  private client: Client | undefined;
  private epoch = 0;
  /** One stable watcher function per (kind, path) and client, so the library de-duplicates them. */
  private watchers = new Map<string, Watcher>();
  /** Refreshes in progress (value: another run was requested meanwhile). */
  private running = new Map<string, boolean>();
  /** The loop of each refresh in progress (it ends after the repeat requested meanwhile). */
  private loops = new Map<string, Promise<void>>();
  /** Changes reported so far (syncGroup: whether its read changed anything). */
  private reports = 0;
  /** topic -> groupId -> canonical JSON last reported. */
  private reported = new Map<string, Map<string, string>>();
  private liveKnown: Set<string> | undefined;

  constructor(
    private readonly topics: readonly string[],
    private readonly selfAddress: string,
    private readonly sink: Sink,
    private readonly logger: Logger,
    private readonly op: ZkOpOptions,
    /** Called when a refresh finds the session expired. */
    private readonly onExpired: (client: Client) => void,
  ) {}

  /** Use `client` from now on (a new session, or the same one after a reconnect) and re-read all. */
  async attach(client: Client): Promise<void> {
    if (client !== this.client) {
      this.client = client;
      this.epoch++;
      this.watchers.clear();
    }
    await Promise.all([this.refreshLive(), ...this.topics.map((t) => this.refreshTopic(t))]);
  }

  /**
   * Re-read `groupId`'s bindings under every served topic now, and resolve once read (and
   * reported when changed): true when anything changed. A read already running is not enough
   * (it may have started before the caller's change): its repeat is awaited.
   */
  async syncGroup(groupId: string): Promise<boolean> {
    const before = this.reports;
    await Promise.all(
      this.topics.map((t) => this.runNow(`bind:${t}:${groupId}`, () => this.refreshBind(t, groupId))),
    );
    return this.reports !== before;
  }

  /** Stop reacting to notifications (the client is being closed). */
  detach(): void {
    this.client = undefined;
    this.epoch++;
    this.watchers.clear();
  }

  /** Re-read the children of /kiteq/sub/{topic}, then every `-bind` node. */
  private async refreshTopic(topic: string): Promise<void> {
    const client = this.client;
    if (client === undefined) return;
    const path = subTopicPath(topic);
    const rerun = () => this.schedule(`topic:${topic}`, () => this.refreshTopic(topic));
    let children = await zkGetChildren(client, path, this.watcher("child", path, rerun), this.op);
    if (children === undefined) {
      // No such node yet: wait for its creation.
      const stat = await zkExists(client, path, this.watcher("exists", path, rerun), this.op);
      if (stat !== undefined) return rerun();
      children = [];
    }
    const groups = new Set(children.map(groupOfBindNode).filter((g): g is string => g !== undefined));
    for (const groupId of this.reported.get(topic)?.keys() ?? []) {
      if (!groups.has(groupId)) this.report(topic, groupId, []);
    }
    await Promise.all(
      [...groups].map((groupId) =>
        this.runNow(`bind:${topic}:${groupId}`, () => this.refreshBind(topic, groupId)),
      ),
    );
  }

  /** Re-read one `{groupId}-bind` node (deleted: the group has no bindings). */
  private async refreshBind(topic: string, groupId: string): Promise<void> {
    const client = this.client;
    if (client === undefined) return;
    const path = bindPath(topic, groupId);
    const rerun = () => this.schedule(`bind:${topic}:${groupId}`, () => this.refreshBind(topic, groupId));
    const node = await zkGetData(client, path, this.watcher("data", path, rerun), this.op);
    if (node === undefined) {
      this.report(topic, groupId, []);
      return;
    }
    let bindings: Binding[];
    const refused: RefusedPattern[] = [];
    try {
      bindings = parseBindingsJson(node.data.toString("utf8"), refused);
      logRefusedPatterns(this.logger, path, refused);
    } catch (err) {
      // Keep what was last reported; the next write of the node is re-read.
      this.logger.warn(
        { path, topic, groupId, err: String(err) },
        "ignoring malformed bindings in ZooKeeper",
      );
      return;
    }
    // KiteQ names the node after the group; bindings of another group or topic do not belong here.
    const own = bindings.filter((b) => b.groupId === groupId && b.topic === topic);
    if (own.length !== bindings.length) {
      this.logger.warn(
        { path, topic, groupId },
        "ignoring bindings for another group or topic in a -bind node",
      );
    }
    this.report(topic, groupId, own);
  }

  /** Re-read /kiteq/alive_servers and report joins and departures (this node itself excluded). */
  private async refreshLive(): Promise<void> {
    const client = this.client;
    if (client === undefined) return;
    const rerun = () => this.schedule("live", () => this.refreshLive());
    let children = await zkGetChildren(
      client,
      ALIVE_SERVERS_PATH,
      this.watcher("child", ALIVE_SERVERS_PATH, rerun),
      this.op,
    );
    if (children === undefined) {
      const stat = await zkExists(
        client,
        ALIVE_SERVERS_PATH,
        this.watcher("exists", ALIVE_SERVERS_PATH, rerun),
        this.op,
      );
      if (stat !== undefined) return rerun();
      children = [];
    }
    const now = new Set(children.filter((a) => a !== this.selfAddress));
    const before = this.liveKnown ?? new Set<string>();
    this.liveKnown = now;
    for (const address of before) if (!now.has(address)) this.emit(() => this.sink.serverGone(address));
    for (const address of now) if (!before.has(address)) this.emit(() => this.sink.serverJoined(address));
  }

  private report(topic: string, groupId: string, bindings: Binding[]): void {
    const json = bindingsToJson(bindings);
    let byGroup = this.reported.get(topic);
    if ((byGroup?.get(groupId) ?? "[]") === json) return;
    if (byGroup === undefined) {
      byGroup = new Map();
      this.reported.set(topic, byGroup);
    }
    if (bindings.length === 0) byGroup.delete(groupId);
    else byGroup.set(groupId, json);
    this.reports++;
    this.logger.debug({ topic, groupId, count: bindings.length }, "bindings changed");
    this.emit(() => this.sink.bindingsChanged(topic, groupId, bindings));
  }

  private emit(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.logger.error({ err }, "registry event handler threw");
    }
  }

  /** The watcher for (kind, path) of the current client; ignores notifications of older clients. */
  private watcher(kind: "child" | "data" | "exists", path: string, action: () => void): Watcher {
    const key = `${kind}:${path}`;
    let w = this.watchers.get(key);
    if (w === undefined) {
      const epoch = this.epoch;
      w = () => {
        if (epoch !== this.epoch) return;
        this.watchers.delete(key);
        action();
      };
      this.watchers.set(key, w);
    }
    return w;
  }

  /** Run `fn` in the background, one run per key at a time; errors are logged and retried. */
  private schedule(key: string, fn: () => Promise<void>): void {
    void this.runNow(key, fn);
  }

  /**
   * Run `fn` now unless a run for `key` is active (then that run repeats once it ends); resolves
   * when the run, and the repeats asked for meanwhile, are done.
   */
  private runNow(key: string, fn: () => Promise<void>): Promise<void> {
    const active = this.loops.get(key);
    if (active !== undefined) {
      this.running.set(key, true);
      return active;
    }
    const loop = (async () => {
      try {
        do {
          this.running.set(key, false);
          await this.guard(key, fn);
        } while (this.running.get(key) === true);
      } finally {
        this.running.delete(key);
        this.loops.delete(key);
      }
    })();
    this.loops.set(key, loop);
    return loop;
  }

  private async guard(key: string, fn: () => Promise<void>): Promise<void> {
    const client = this.client;
    const epoch = this.epoch;
    try {
      await fn();
    } catch (err) {
      if (client === undefined || epoch !== this.epoch) return;
      if (isSessionExpired(err)) {
        this.onExpired(client);
        return;
      }
      // While disconnected the registry re-reads everything on reconnect; otherwise retry here.
      if (client.getState() !== zookeeper.State.SYNC_CONNECTED) return;
      this.logger.warn({ key, err: String(err) }, "ZooKeeper watch refresh failed; retrying");
      setTimeout(() => {
        if (epoch === this.epoch) this.schedule(key, fn);
      }, RETRY_MS).unref();
    }
  }
}

/**
 * One warning per Regx binding of a `-bind` node left out for its pattern (Go's regexp refuses
 * it); the node's other bindings, and every other group's, stay.
 */
export function logRefusedPatterns(logger: Logger, path: string, refused: readonly RefusedPattern[]): void {
  for (const r of refused) {
    logger.warn(
      {
        code: r.error.code,
        path,
        groupId: r.groupId,
        topic: r.topic,
        pattern: r.pattern,
        err: r.error.message,
      },
      "Regx binding refused: invalid pattern (Go/RE2 syntax); the other bindings stay",
    );
  }
}
