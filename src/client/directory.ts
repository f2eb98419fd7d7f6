/**
 * Where the SDK finds brokers: ZooKeeper (`zk://h:p[,h:p][?timeout=4s]`, KiteQ's
 * /kiteq/server/{topic} children, watched), a KiteQ registry YAML file (its brokers and their
 * topics), or a fixed list of `host:port` addresses (every one serves every topic).
 * Consumers also publish their bindings through it (ZooKeeper: /kiteq/sub/{topic}/{groupId}-bind,
 * as kiteq-client-go does; a file or a list: the broker's own configuration holds the bindings).
 */
import type { Client } from "node-zookeeper-client";
import zookeeper from "node-zookeeper-client";
import { type Binding, bindingsToJson } from "../binding/binding.js";
import { loadRegistryFile } from "../binding/registry-file.js";
import { ErrorCode, KiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import {
  abandonClient,
  closeZooKeeper,
  connectZooKeeper,
  onLostSession,
  parseZkQuery,
  parseZkUrl,
} from "../registry/zk-connect.js";
import { zkCreate, zkGetChildren, zkRemove, zkSetData } from "../registry/zk-ops.js";
import { bindPath, isServerAddress, serverTopicPath } from "../registry/zk-paths.js";

/** Broker addresses (`host:port`) serving each topic. */
export type TopicBrokers = ReadonlyMap<string, readonly string[]>;

/** A source of broker addresses per topic. */
export interface BrokerDirectory {
  /** Start watching `topics`; `onChange` gets the full map at start and after every change. */
  start(topics: readonly string[], onChange: (brokers: TopicBrokers) => void): Promise<void>;
  /** Publish a consumer group's bindings (ZooKeeper only; elsewhere a no-op). */
  publishBindings(groupId: string, bindings: readonly Binding[]): Promise<void>;
  close(): Promise<void>;
}

/** What the `registry` option accepts. */
export type RegistrySpec = string | readonly string[];

/** ZooKeeper session and connect bounds of the SDK. */
export interface ZkDirectoryOptions {
  sessionTimeoutMs: number;
  connectTimeoutMs: number;
  /** Re-read /kiteq/server/{topic} this often besides the watches (a lost watch costs at most this). */
  pollMs: number;
  /**
   * Bound of start()'s first session (the client's connectTimeoutMs): without it an unreachable
   * ZooKeeper took 4 connect attempts, ~13 s, whatever connectTimeoutMs the application gave.
   */
  startTimeoutMs: number;
}

/** The registry YAML file `spec` names (`file://path.yaml` or `*.yaml|*.yml`), if it names one. */
export function registryFilePath(spec: RegistrySpec): string | undefined {
  if (typeof spec !== "string") return undefined;
  const s = spec.trim();
  if (s.startsWith("file://")) return s.slice("file://".length);
  return /\.ya?ml$/i.test(s) && !s.startsWith("zk://") ? s : undefined;
}

/** Build the directory named by `spec`: `zk://...`, `file://path.yaml` / `*.yaml|*.yml`, or addresses. */
export function createDirectory(
  spec: RegistrySpec,
  logger: Logger,
  zk: Partial<ZkDirectoryOptions> = {},
): BrokerDirectory {
  if (typeof spec === "string") {
    const s = spec.trim();
    if (s.startsWith("zk://")) return new ZkDirectory(s, logger, zk);
    const file = registryFilePath(s);
    if (file !== undefined) return new FileDirectory(file);
    return new StaticDirectory(s.split(",").map((a) => a.trim()));
  }
  return new StaticDirectory(spec);
}

/** Parse `zk://h:p,h:p[/chroot][?timeout=4s]` into the connect string and the session timeout. */
export function parseZkRegistry(spec: string): { connectString: string; sessionTimeoutMs?: number } {
  const q = spec.indexOf("?");
  const base = q === -1 ? spec : spec.slice(0, q);
  const query = parseZkQuery(q === -1 ? "" : spec.slice(q + 1));
  if ("error" in query) {
    throw new KiteqError(ErrorCode.ConfigInvalid, `registry ${spec}: ${query.error}`, { key: "registry" });
  }
  return { connectString: parseZkUrl(base).connectString, sessionTimeoutMs: query.sessionTimeoutMs };
}

function checkAddresses(addresses: readonly string[], what: string): string[] {
  const list = addresses.filter((a) => a !== "");
  if (list.length === 0) {
    throw new KiteqError(ErrorCode.ConfigInvalid, `registry: no broker address in ${what}`, {
      key: "registry",
    });
  }
  for (const a of list) {
    if (!isServerAddress(a)) {
      // A mistyped zk:// or file name fell through to here and was said to be "not host:port" only.
      throw new KiteqError(ErrorCode.ConfigInvalid, `registry: "${a}" is not host:port${registryHint(a)}`, {
        key: "registry",
      });
    }
  }
  return list;
}

/** What the registry option takes, and the likely intent of a mistyped ZooKeeper URL. */
function registryHint(given: string): string {
  const zk = /^zk[:/]+(?!\/)/i.exec(given);
  // A well-formed URL or file name here came inside an array, which holds broker addresses only.
  const guess =
    given.startsWith("zk://") || registryFilePath(given) !== undefined
      ? "; a ZooKeeper URL or a registry file is the registry string itself, not an element of an array"
      : zk !== null
        ? `; did you mean "zk://${given.slice(zk[0].length)}"?`
        : "";
  return (
    `${guess} (registry is "zk://host:port[,host:port]", a registry YAML file ` +
    '(*.yaml, *.yml or file://path), or broker addresses "host:port[,host:port]")'
  );
}

/** A fixed list of brokers, each serving every topic. */
class StaticDirectory implements BrokerDirectory {
  private readonly addresses: string[];
  constructor(addresses: readonly string[]) {
    this.addresses = checkAddresses(addresses, "the address list");
  }
  async start(topics: readonly string[], onChange: (brokers: TopicBrokers) => void): Promise<void> {
    // No topic (a consumer of bindings kept by the broker): connect to every address anyway.
    onChange(new Map(topics.length === 0 ? [["", this.addresses]] : topics.map((t) => [t, this.addresses])));
  }
  async publishBindings(): Promise<void> {}
  async close(): Promise<void> {}
}

/** A KiteQ registry YAML file: each broker serves the topics it lists. */
class FileDirectory implements BrokerDirectory {
  constructor(private readonly path: string) {}
  async start(topics: readonly string[], onChange: (brokers: TopicBrokers) => void): Promise<void> {
    const file = await loadRegistryFile(this.path);
    const all = checkAddresses(
      file.brokers.map((b) => b.address),
      this.path,
    );
    // No topic (a consumer of bindings kept by the broker): connect to every broker of the file.
    const byTopic = new Map<string, string[]>(
      topics.length === 0
        ? [["", all]]
        : topics.map((t) => [t, file.brokers.filter((b) => b.topics.includes(t)).map((b) => b.address)]),
    );
    // The file is read once: a topic it gives no broker (a typo, `topic:` for `topics:`) can never
    // be served, and waiting connectTimeoutMs ended in "the registry names no broker".
    const unserved = [...byTopic].filter(([, list]) => list.length === 0).map(([t]) => t);
    if (unserved.length > 0) {
      const listed = file.brokers
        .map((b) => `${b.address} (${b.topics.length === 0 ? "no topics" : b.topics.join(", ")})`)
        .join("; ");
      throw new KiteqError(
        ErrorCode.ConfigInvalid,
        `registry file ${this.path} lists no broker for topic ${unserved.map((t) => JSON.stringify(t)).join(", ")}: ` +
          `add it to a broker's topics (its brokers: ${listed})`,
        { key: "registry", path: this.path, topic: unserved.join(",") },
      );
    }
    onChange(byTopic);
  }
  async publishBindings(): Promise<void> {}
  async close(): Promise<void> {}
}

/** ZooKeeper: watches /kiteq/server/{topic}; writes /kiteq/sub/{topic}/{groupId}-bind. */
class ZkDirectory implements BrokerDirectory {
  private client: Client | undefined;
  private closed = false;
  private topics: readonly string[] = [];
  private onChange: (brokers: TopicBrokers) => void = () => undefined;
  private readonly current = new Map<string, readonly string[]>();
  private poll: NodeJS.Timeout | undefined;
  private reconnecting: Promise<void> | undefined;
  private readonly bindings = new Map<string, readonly Binding[]>();
  private readonly connectString: string;
  private readonly options: ZkDirectoryOptions;
  /** One stable watcher function, so the library keeps one watch per path however often we read. */
  private readonly watcher = () => void this.refreshAll();

  constructor(
    spec: string,
    private readonly logger: Logger,
    options: Partial<ZkDirectoryOptions>,
  ) {
    const parsed = parseZkRegistry(spec);
    this.connectString = parsed.connectString;
    this.options = {
      sessionTimeoutMs: options.sessionTimeoutMs ?? parsed.sessionTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 3_000,
      pollMs: options.pollMs ?? 2_000,
      startTimeoutMs: options.startTimeoutMs ?? 10_000,
    };
  }

  async start(topics: readonly string[], onChange: (brokers: TopicBrokers) => void): Promise<void> {
    this.topics = topics;
    this.onChange = onChange;
    const ms = this.options.startTimeoutMs;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), ms);
    try {
      await this.connect(abort.signal);
    } catch (err) {
      if (!abort.signal.aborted) throw err;
      throw new KiteqError(
        ErrorCode.RegistryFailed,
        `ZooKeeper at ${this.connectString} not reachable within connectTimeoutMs (${ms} ms)`,
        { key: "registry", zk: this.connectString },
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
    this.poll = setInterval(() => void this.refreshAll(), this.options.pollMs);
    this.poll.unref();
  }

  async publishBindings(groupId: string, bindings: readonly Binding[]): Promise<void> {
    const byTopic = new Map<string, Binding[]>();
    for (const b of bindings) byTopic.set(b.topic, [...(byTopic.get(b.topic) ?? []), b]);
    for (const [topic, list] of byTopic) this.bindings.set(`${topic}\u0000${groupId}`, list);
    await this.writeBindings();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.poll);
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) await closeZooKeeper(client);
  }

  private async connect(signal?: AbortSignal): Promise<void> {
    const client = await connectZooKeeper(this.connectString, {
      sessionTimeoutMs: this.options.sessionTimeoutMs,
      connectTimeoutMs: this.options.connectTimeoutMs,
      retries: 3,
      logger: this.logger,
      signal,
    });
    if (this.closed) {
      await closeZooKeeper(client);
      return;
    }
    this.client = client;
    const renew = (why: string) => {
      if (this.client !== client || this.closed) return;
      this.logger.warn(`${why}; opening a new ZooKeeper session`);
      stopWatch();
      abandonClient(client);
      this.client = undefined;
      // The new session writes this consumer's bindings again (connect()).
      void this.reconnect();
    };
    // A ZooKeeper that lost its data refuses this client for ever without expiring its session.
    const stopWatch = onLostSession(client, this.options.sessionTimeoutMs, (why) => renew(why), {
      connectString: this.connectString,
    });
    client.on("state", (state) => {
      if (state === zookeeper.State.EXPIRED) renew("ZooKeeper session expired");
      else if (state === zookeeper.State.SYNC_CONNECTED && this.client === client) void this.refreshAll();
    });
    await this.writeBindings();
    await this.refreshAll();
  }

  private reconnect(): Promise<void> {
    this.reconnecting ??= (async () => {
      let delay = 250;
      while (!this.closed && this.client === undefined) {
        try {
          await this.connect();
        } catch (err) {
          this.logger.warn({ err: String(err) }, "ZooKeeper reconnect failed; retrying");
          await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
          delay = Math.min(delay * 2, 5_000);
        }
      }
    })().finally(() => {
      this.reconnecting = undefined;
    });
    return this.reconnecting;
  }

  private async writeBindings(): Promise<void> {
    const client = this.client;
    if (client === undefined) return;
    for (const list of this.bindings.values()) {
      const first = list[0];
      if (first === undefined) continue;
      const path = bindPath(first.topic, first.groupId);
      const json = bindingsToJson(list);
      // Persistent bindings outlive the consumer (KiteQ keeps storing for the group); others go
      // with the session, as kiteq-client-go's ephemeral subscriptions do.
      const persistent = list.some((b) => b.persistent);
      const created = await zkCreate(client, path, { data: json, ephemeral: !persistent });
      if (created === "exists") {
        if (!persistent) await zkRemove(client, path);
        if (!persistent) await zkCreate(client, path, { data: json, ephemeral: true });
        else await zkSetData(client, path, json);
      }
    }
  }

  private async refreshAll(): Promise<void> {
    const client = this.client;
    if (client === undefined || this.closed) return;
    let changed = false;
    for (const topic of this.topics) {
      try {
        const path = serverTopicPath(topic);
        // A missing or empty node is passed on as an empty list; the pool keeps the working
        // connections of such a topic (a wiped ZooKeeper lists nothing until brokers re-register).
        const children = (await zkGetChildren(client, path, this.watcher, { timeoutMs: 5_000 })) ?? [];
        const list = children.filter(isServerAddress).sort();
        const before = this.current.get(topic);
        if (before === undefined || before.join(",") !== list.join(",")) {
          this.current.set(topic, list);
          changed = true;
        }
      } catch (err) {
        this.logger.debug({ topic, err: String(err) }, "reading brokers of a topic failed");
      }
    }
    if (changed && !this.closed) this.onChange(new Map(this.current));
  }
}
