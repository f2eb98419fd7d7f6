/**
 * The SDK's connections: one KiteqConnection per broker address the directory lists for the
 * client's topics, each kept alive with heartbeats (a link whose pings go unanswered
 * `HEARTBEAT_MISSES` times in a row is closed) and re-opened after a loss with exponential
 * backoff and full jitter. Addresses leaving the directory are closed; new ones are opened,
 * except that a topic whose list turns empty keeps its working connections (see update()).
 */

import { type ErrorCode, KiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { CommandType } from "../protocol/commands.js";
import { encodeHeartBeat } from "../protocol/messages.js";
import { KiteqConnection, type PushHandler, type TxCheckHandler } from "./connection.js";
import type { TopicBrokers } from "./directory.js";

/** Pings missed in a row before a link is dropped and re-opened. */
const HEARTBEAT_MISSES = 3;

/** Options of a {@link BrokerPool}. */
export interface PoolOptions {
  groupId: string;
  secretKey?: string;
  warmupSec?: number;
  logger: Logger;
  /** Heartbeat interval (default 3 s). */
  heartbeatMs: number;
  /** Bound of connect + handshake, and of each request (publish, ping). */
  requestTimeoutMs: number;
  /** Reconnect backoff: first delay and cap (full jitter within). */
  reconnectMinMs: number;
  reconnectMaxMs: number;
  onPush?: PushHandler;
  onTxCheck?: TxCheckHandler;
}

/** One broker address and its connection, if open. */
class Link {
  conn: KiteqConnection | undefined;
  failures = 0;
  missed = 0;
  /** Why the last connect failed (cleared by a connect). */
  lastError: string | undefined;
  /** The KiteqError code of the last connect failure (KQ_AUTH_REFUSED: a wrong secret). */
  lastErrorCode: ErrorCode | undefined;
  /** Until then, pick() prefers other brokers (see BrokerPool.suspect). */
  suspectUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private ping: NodeJS.Timeout | undefined;
  private connecting = false;
  removed = false;
  /**
   * Kept only because the registry lists no broker for its topic (see BrokerPool.update): when
   * its connection fails it is dropped, not re-opened.
   */
  kept = false;

  constructor(
    readonly address: string,
    private readonly pool: BrokerPool,
  ) {}

  get ready(): boolean {
    return this.conn !== undefined && !this.conn.isClosed;
  }

  open(): void {
    if (this.removed || this.connecting || this.ready) return;
    this.connecting = true;
    const o = this.pool.options;
    const i = this.address.lastIndexOf(":");
    KiteqConnection.connect({
      host: this.address.slice(0, i).replace(/^\[|\]$/g, ""),
      port: Number(this.address.slice(i + 1)),
      groupId: o.groupId,
      secretKey: o.secretKey,
      warmingupSec: o.warmupSec,
      heartbeatMs: 0,
      timeoutMs: o.requestTimeoutMs,
      onMessage: o.onPush,
      onTxCheck: o.onTxCheck,
    }).then(
      (conn) => {
        this.connecting = false;
        if (this.removed) {
          conn.close();
          return;
        }
        this.conn = conn;
        this.lastError = undefined;
        this.lastErrorCode = undefined;
        this.failures = 0;
        this.missed = 0;
        conn.onClose(() => this.lost(conn));
        this.ping = setInterval(() => this.heartbeat(conn), o.heartbeatMs);
        this.ping.unref();
        o.logger.debug({ broker: this.address }, "connected to broker");
        this.pool.changed();
      },
      (err: unknown) => {
        this.connecting = false;
        this.lastError = err instanceof Error ? err.message : String(err);
        this.lastErrorCode = err instanceof KiteqError ? err.code : undefined;
        o.logger.debug({ broker: this.address, err: String(err) }, "connect to broker failed");
        this.schedule();
      },
    );
  }

  close(): void {
    this.removed = true;
    clearTimeout(this.timer);
    clearInterval(this.ping);
    this.conn?.close();
  }

  private heartbeat(conn: KiteqConnection): void {
    conn.request(CommandType.HEARTBEAT, encodeHeartBeat({ version: Date.now() })).then(
      () => {
        this.missed = 0;
      },
      () => {
        if (++this.missed >= HEARTBEAT_MISSES) {
          this.pool.options.logger.warn({ broker: this.address }, "broker stopped answering heartbeats");
          conn.close();
        }
      },
    );
  }

  private lost(conn: KiteqConnection): void {
    if (this.conn !== conn) return;
    clearInterval(this.ping);
    this.conn = undefined;
    if (this.removed) return;
    if (this.kept) {
      this.pool.options.logger.warn(
        { broker: this.address },
        "connection to broker lost; not reconnecting (the registry lists it for no topic)",
      );
      this.pool.drop(this);
      return;
    }
    this.pool.options.logger.warn({ broker: this.address }, "connection to broker lost; reconnecting");
    this.pool.changed();
    this.schedule();
  }

  private schedule(): void {
    if (this.removed) return;
    const o = this.pool.options;
    const cap = Math.min(o.reconnectMaxMs, o.reconnectMinMs * 2 ** this.failures);
    this.failures = Math.min(this.failures + 1, 20);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), o.reconnectMinMs / 2 + Math.random() * cap);
    this.timer.unref();
  }
}

/** The set of links to the brokers of the client's topics. */
export class BrokerPool {
  private readonly links = new Map<string, Link>();
  private byTopic: TopicBrokers = new Map();
  /** Topics whose registry list is empty and whose working links are kept (warned once each time). */
  private keptTopics = new Set<string>();
  private waiters: (() => void)[] = [];
  private rr = 0;
  private closed = false;

  constructor(readonly options: PoolOptions) {}

  /** Whether close() was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Apply the directory's current view: open links to new addresses, close removed ones. A topic
   * whose list turns empty keeps the brokers it had whose connections work: a registry that lost
   * its data (ZooKeeper restarted wiped) lists no broker until they register again, while those
   * connections serve on (closing them failed every send with KQ_NO_BROKER for 15-20 s and cut
   * consumers off). They stay until the registry lists brokers for the topic again or they fail.
   * A broker removed from a list that is not empty is closed at once.
   */
  update(brokers: TopicBrokers): void {
    if (this.closed) return;
    const listed = new Set([...brokers.values()].flat());
    const effective = new Map<string, readonly string[]>();
    const keptTopics = new Set<string>();
    for (const [topic, list] of brokers) {
      const working =
        list.length > 0
          ? []
          : (this.byTopic.get(topic) ?? []).filter((a) => this.links.get(a)?.ready === true);
      if (working.length === 0) {
        effective.set(topic, list);
        continue;
      }
      effective.set(topic, working);
      keptTopics.add(topic);
      if (!this.keptTopics.has(topic)) {
        this.options.logger.warn(
          { topic, brokers: working.join(",") },
          "the registry lists no broker for the topic; keeping the working connections to its brokers",
        );
      }
    }
    this.keptTopics = keptTopics;
    this.byTopic = effective;
    const wanted = new Set([...effective.values()].flat());
    for (const [address, link] of this.links) {
      if (!wanted.has(address)) {
        link.close();
        this.links.delete(address);
      } else {
        link.kept = !listed.has(address);
      }
    }
    for (const address of wanted) {
      if (!this.links.has(address)) {
        const link = new Link(address, this);
        this.links.set(address, link);
        link.open();
      }
    }
    this.changed();
  }

  /** Forget a kept link whose connection failed (the registry lists it for no topic). */
  drop(link: Link): void {
    if (this.links.get(link.address) !== link) return;
    link.close();
    this.links.delete(link.address);
    const byTopic = new Map<string, readonly string[]>();
    for (const [topic, list] of this.byTopic)
      byTopic.set(
        topic,
        list.filter((a) => a !== link.address),
      );
    this.byTopic = byTopic;
    this.changed();
  }

  /** Open connections (for pushes and acks: a consumer listens on all of them). */
  connections(): KiteqConnection[] {
    return [...this.links.values()].flatMap((l) => (l.ready && l.conn !== undefined ? [l.conn] : []));
  }

  /** The brokers known, with why the last connect to each failed (for errors). */
  describe(): { address: string; lastError: string | undefined; lastErrorCode: ErrorCode | undefined }[] {
    return [...this.links.values()].map((l) => ({
      address: l.address,
      lastError: l.lastError,
      lastErrorCode: l.lastErrorCode,
    }));
  }

  /**
   * A ready connection to a broker serving `topic`, round robin, preferring addresses not in
   * `avoid` (those that just failed this send); undefined when none is ready.
   */
  pick(topic: string, avoid: ReadonlySet<string>): { address: string; conn: KiteqConnection } | undefined {
    const addresses = this.byTopic.get(topic) ?? [];
    const now = Date.now();
    const ready = addresses.flatMap((a) => {
      const l = this.links.get(a);
      return l?.ready === true && l.conn !== undefined ? [{ address: a, conn: l.conn }] : [];
    });
    const fresh = ready.filter(
      (r) => !avoid.has(r.address) && (this.links.get(r.address)?.suspectUntil ?? 0) <= now,
    );
    const from = fresh.length > 0 ? fresh : ready;
    if (from.length === 0) return undefined;
    this.rr = (this.rr + 1) % 1_000_000;
    return from[this.rr % from.length];
  }

  /**
   * A request on `address` timed out (the broker may be frozen or overloaded): prefer the other
   * brokers for `ms` (its connection stays; heartbeats close it if it stays silent).
   */
  suspect(address: string, ms: number): void {
    const link = this.links.get(address);
    if (link !== undefined) link.suspectUntil = Date.now() + ms;
  }

  /** Resolves at the next change of the link set (a connect, a loss) or after `ms`. */
  waitChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const waiters = this.waiters;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      waiters.push(done);
    });
  }

  /** Wake every waitChange. */
  changed(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Close every link (outstanding requests fail with ConnectionClosed). */
  close(): void {
    this.closed = true;
    for (const link of this.links.values()) link.close();
    this.links.clear();
    this.changed();
  }
}
