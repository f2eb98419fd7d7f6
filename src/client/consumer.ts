/**
 * The SDK consumer: binds its group (ZooKeeper /kiteq/sub, as kiteq-client-go does), connects to
 * every broker of its topics, and runs at most `concurrency` handlers at once. A push is answered
 * only when its handler is done (true: ack, false or a throw: nack), so the broker's own bound on
 * pushes in flight per group (the binding's watermark) is the back-pressure; the SDK keeps at most
 * `maxPending` pushes waiting for a handler and answers false to any beyond that.
 */
import {
  BIND_VERSION,
  type Binding,
  BindType,
  createBinding,
  DEFAULT_WATERMARK,
  FANOUT_MESSAGE_TYPE,
} from "../binding/binding.js";
import { ErrorCode, KiteqError } from "../errors.js";
import { type Logger, silentLogger } from "../log.js";
import type { PushedMessage } from "./connection.js";
import { type BrokerDirectory, createDirectory, type RegistrySpec } from "./directory.js";
import { type ConsumedMessage, fromWire } from "./message.js";
import { BrokerPool } from "./pool.js";
import { waitConnected } from "./producer.js";

/** A subscription of the consumer's group. */
export interface BindingSpec {
  topic: string;
  /** Direct: the exact messageType; Regx: a Go regular expression; Fanout: omitted ("*"). */
  messageType?: string;
  /** Default "direct" ("fanout" when messageType is omitted or "*"). */
  bindType?: "direct" | "regx" | "fanout";
  /** Delivery rate limit in messages/s and pushes in flight per broker node (default and max 6,000). */
  watermark?: number;
  /** Keep storing for the group while it is offline (default true). */
  persistent?: boolean;
}

/** The handler form: true (or nothing) acks, false or a throw nacks. */
export type MessageHandler = (message: ConsumedMessage) => Promise<boolean | undefined> | boolean | undefined;

/** Options of {@link createConsumer}. */
export interface ConsumerOptions {
  /** `zk://host:port[,host:port][?timeout=4s]`, a KiteQ registry YAML file, or `host:port` addresses. */
  registry: RegistrySpec;
  groupId: string;
  secretKey?: string;
  /**
   * The group's subscriptions: published under /kiteq/sub with a ZooKeeper registry, and the
   * topics whose brokers are found. With an address list or a YAML file they may be empty (the
   * broker's own bindings apply; every listed broker is connected).
   */
  bindings: readonly BindingSpec[];
  /** Handlers (or un-answered messages of the iterator form) at once; default 16. */
  concurrency?: number;
  /** KiteQ warm-up: the broker ramps this connection's share from 0 over this many seconds. */
  warmupSec?: number;
  /** Handler form; without it, iterate the consumer (`for await (const m of consumer)`). */
  handler?: MessageHandler;
  /** Pushes waiting for a free handler, at most; more are answered false at once (default 10,000). */
  maxPending?: number;
  /**
   * A push that waited this long for a handler is answered false without running (the broker
   * counts an unanswered push as failed after its delivery timeout, 5 s by default); default 4,000 ms.
   */
  maxWaitMs?: number;
  /** close() waits this long for running handlers, then nacks the rest (default 30,000 ms). */
  closeTimeoutMs?: number;
  heartbeatMs?: number;
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  zkSessionTimeoutMs?: number;
  logger?: Logger;
}

/** A consumer; iterate it (when created without a handler) and close it. */
export interface Consumer extends AsyncIterable<ConsumedMessage> {
  /** Handlers running (or iterator messages not yet answered) right now. */
  readonly active: number;
  /** Pushes received and waiting for a free handler. */
  readonly pending: number;
  /** Stop taking pushes, let running handlers finish and send their acks, then disconnect. */
  close(): Promise<void>;
}

interface Delivery {
  message: ConsumedMessage;
  receivedAt: number;
  settled: boolean;
  resolve(ok: boolean): void;
}

class SdkConsumer implements Consumer {
  private queue: Delivery[] = [];
  private head = 0;
  private running = 0;
  private closing = false;
  private readonly pullers: ((r: IteratorResult<ConsumedMessage>) => void)[] = [];
  private idle: (() => void)[] = [];
  readonly pool: BrokerPool;
  private readonly concurrency: number;
  private readonly maxPending: number;
  private readonly maxWaitMs: number;

  constructor(
    private readonly options: ConsumerOptions,
    private readonly directory: BrokerDirectory,
    private readonly logger: Logger,
  ) {
    this.concurrency = Math.max(1, options.concurrency ?? 16);
    this.maxPending = Math.max(0, options.maxPending ?? 10_000);
    this.maxWaitMs = options.maxWaitMs ?? 4_000;
    this.pool = new BrokerPool({
      groupId: options.groupId,
      secretKey: options.secretKey,
      warmupSec: options.warmupSec,
      logger,
      heartbeatMs: options.heartbeatMs ?? 3_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
      reconnectMinMs: 100,
      reconnectMaxMs: 5_000,
      onPush: (m) => this.onPush(m),
    });
  }

  get active(): number {
    return this.running;
  }

  get pending(): number {
    return this.queue.length - this.head;
  }

  [Symbol.asyncIterator](): AsyncIterator<ConsumedMessage> {
    if (this.options.handler !== undefined) {
      throw new KiteqError(ErrorCode.ConfigInvalid, "a consumer created with a handler is not iterable");
    }
    return {
      next: () =>
        new Promise<IteratorResult<ConsumedMessage>>((resolve) => {
          if (this.closing) {
            resolve({ value: undefined, done: true });
            return;
          }
          this.pullers.push(resolve);
          this.pump();
        }),
      return: async () => {
        void this.close();
        return { value: undefined, done: true };
      },
    };
  }

  async close(): Promise<void> {
    if (this.closing) return this.whenIdle();
    this.closing = true;
    for (const p of this.pullers.splice(0)) p({ value: undefined, done: true });
    // Waiting pushes were never started: hand them back to the broker at once.
    for (let d = this.take(); d !== undefined; d = this.take()) this.settle(d, false, false);
    const timeoutMs = this.options.closeTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.whenIdle(),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (this.running > 0)
      this.logger.warn({ running: this.running }, "close: handlers still running, not acked");
    // Acks are written on the next event-loop turn; give them a moment to leave the socket.
    await new Promise((r) => setTimeout(r, 100));
    this.pool.close();
    await this.directory.close();
  }

  private whenIdle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  private onPush(m: PushedMessage): Promise<boolean> | boolean {
    if (this.closing) return false;
    if (this.pending >= this.maxPending) return false;
    return new Promise<boolean>((resolve) => {
      let delivery: Delivery | undefined;
      try {
        const message = fromWire(m.header, m.body, (ok) => {
          if (delivery !== undefined) this.settle(delivery, ok, true);
        });
        delivery = { message, receivedAt: Date.now(), settled: false, resolve };
      } catch (err) {
        this.logger.warn({ messageId: m.header.messageId, err: String(err) }, "undecodable message nacked");
        resolve(false);
        return;
      }
      this.queue.push(delivery);
      this.pump();
    });
  }

  private take(): Delivery | undefined {
    if (this.head >= this.queue.length) return undefined;
    const d = this.queue[this.head++];
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return d;
  }

  private pump(): void {
    const handler = this.options.handler;
    while (this.running < this.concurrency && this.pending > 0) {
      if (handler === undefined && this.pullers.length === 0) return;
      const d = this.take();
      if (d === undefined) return;
      if (Date.now() - d.receivedAt > this.maxWaitMs) {
        // The broker has (nearly) timed this push out; running it now would only duplicate work.
        this.settle(d, false, false);
        continue;
      }
      this.running++;
      if (handler === undefined) {
        this.pullers.shift()?.({ value: d.message, done: false });
        continue;
      }
      Promise.resolve()
        .then(() => handler(d.message))
        .then(
          (r) => this.settle(d, r !== false, true),
          (err: unknown) => {
            this.logger.warn({ messageId: d.message.messageId, err: String(err) }, "handler failed; nacked");
            this.settle(d, false, true);
          },
        );
    }
  }

  private settle(d: Delivery, ok: boolean, started: boolean): void {
    if (d.settled) return;
    d.settled = true;
    d.resolve(ok);
    if (!started) return;
    this.running--;
    if (this.running === 0) for (const r of this.idle.splice(0)) r();
    if (!this.closing) this.pump();
  }
}

/** Turn a BindingSpec into KiteQ's binding of `groupId`. */
export function toBinding(groupId: string, spec: BindingSpec): Binding {
  const fanout =
    spec.bindType === "fanout" || (spec.bindType === undefined && (spec.messageType ?? "*") === "*");
  const bindType = fanout ? BindType.Fanout : spec.bindType === "regx" ? BindType.Regx : BindType.Direct;
  return createBinding({
    groupId,
    topic: spec.topic,
    messageType: fanout ? FANOUT_MESSAGE_TYPE : spec.messageType,
    bindType,
    version: BIND_VERSION,
    watermark: spec.watermark ?? DEFAULT_WATERMARK,
    persistent: spec.persistent ?? true,
  });
}

/**
 * Create a consumer: publish the group's bindings (ZooKeeper registry), connect to every broker
 * of the bound topics and start taking pushes; resolves once one broker is connected (else
 * KQ_NO_BROKER after connectTimeoutMs).
 */
export async function createConsumer(options: ConsumerOptions): Promise<Consumer> {
  const zk = typeof options.registry === "string" && options.registry.trim().startsWith("zk://");
  if (options.bindings.length === 0 && zk) {
    // Without bindings there is no topic to find brokers by (and nothing to publish).
    throw new KiteqError(
      ErrorCode.ConfigInvalid,
      "createConsumer: bindings must hold at least one binding with a ZooKeeper registry",
      { key: "bindings" },
    );
  }
  const bindings = options.bindings.map((b) => toBinding(options.groupId, b));
  const logger = (options.logger ?? silentLogger).child({ groupId: options.groupId, role: "consumer" });
  const directory = createDirectory(options.registry, logger, {
    sessionTimeoutMs: options.zkSessionTimeoutMs,
  });
  const consumer = new SdkConsumer(options, directory, logger);
  try {
    const topics = [...new Set(bindings.map((b) => b.topic))];
    await directory.start(topics, (brokers) => consumer.pool.update(brokers));
    await directory.publishBindings(options.groupId, bindings);
    await waitConnected(consumer.pool, options.connectTimeoutMs ?? 10_000);
  } catch (err) {
    await consumer.close().catch(() => undefined);
    throw err;
  }
  return consumer;
}
