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
import { loadRegistryFile } from "../binding/registry-file.js";
import { withDeadline } from "../deadline.js";
import { ErrorCode, KiteqError } from "../errors.js";
import { type Logger, silentLogger } from "../log.js";
import { CommandType } from "../protocol/commands.js";
import { encodeHeartBeat } from "../protocol/messages.js";
import type { PushedMessage } from "./connection.js";
import { type BrokerDirectory, createDirectory, type RegistrySpec, registryFilePath } from "./directory.js";
import { type ConsumedMessage, fromWire } from "./message.js";
import { checkConsumerOptions } from "./options.js";
import { BrokerPool } from "./pool.js";
import { waitConnected } from "./producer.js";

/** A subscription of the consumer's group. */
export interface BindingSpec {
  topic: string;
  /** Direct: the exact messageType; Regx: a Go regular expression; Fanout: omitted ("*"). */
  messageType?: string | undefined;
  /** Default "direct" ("fanout" when messageType is omitted or "*"). */
  bindType?: "direct" | "regx" | "fanout" | undefined;
  /** Delivery rate limit in messages/s and pushes in flight per broker node (default and max 6,000). */
  watermark?: number | undefined;
  /** Keep storing for the group while it is offline (default true). */
  persistent?: boolean | undefined;
}

/** The handler form: true (or nothing) acks, false or a throw nacks. */
export type MessageHandler = (
  message: ConsumedMessage,
  // biome-ignore lint/suspicious/noConfusingVoidType: "or nothing": `async (m) => { await work(m); }` acks.
) => Promise<boolean | undefined | void> | boolean | undefined | void;

/** Options of {@link createConsumer}. */
export interface ConsumerOptions {
  /** `zk://host:port[,host:port][?timeout=4s]`, a KiteQ registry YAML file, or `host:port` addresses. */
  registry: RegistrySpec;
  /** The consumer group: each message is delivered to one consumer of each bound group. */
  groupId: string;
  /** The group's secret, when the brokers check handshakes (their KITEQ_SECRETS). */
  secretKey?: string | undefined;
  /**
   * The group's subscriptions: published under /kiteq/sub with a ZooKeeper registry, and the
   * topics whose brokers are found. With an address list or a YAML file they may be empty (the
   * broker's own bindings apply; every listed broker is connected).
   */
  bindings: readonly BindingSpec[];
  /** Handlers (or un-answered messages of the iterator form) at once; default 16. */
  concurrency?: number | undefined;
  /** KiteQ warm-up: the broker ramps this connection's share from 0 over this many seconds. */
  warmupSec?: number | undefined;
  /** Handler form; without it, iterate the consumer (`for await (const m of consumer)`). */
  handler?: MessageHandler | undefined;
  /**
   * Pushes waiting for a busy consumer's next free handler, at most; more are answered false at
   * once (default 10,000; 0: none wait, and pushes still fill free handlers).
   */
  maxPending?: number | undefined;
  /**
   * A push that waited this long for a handler is answered false without running, also while
   * every handler is stuck (the broker counts an unanswered push as failed after its delivery
   * timeout, 5 s by default); default 4,000 ms. A message that runs for 30 s is logged (warn).
   */
  maxWaitMs?: number | undefined;
  /**
   * close() waits this long for running handlers, then disconnects (their messages are
   * redelivered); default 30,000 ms. Every close() call, the iterator's `break` included, settles
   * within it.
   */
  closeTimeoutMs?: number | undefined;
  /** Heartbeat interval per connection (default 3,000 ms; 3 misses drop the connection, which is re-opened). */
  heartbeatMs?: number | undefined;
  /** Bound of one connect and handshake, or one request, on one broker (default 5,000 ms). */
  requestTimeoutMs?: number | undefined;
  /**
   * How long createConsumer waits for a ZooKeeper session (zk:// registry; else KQ_REGISTRY_FAILED)
   * and then for a first broker connection (else KQ_NO_BROKER); default 10,000 ms each.
   */
  connectTimeoutMs?: number | undefined;
  /** ZooKeeper session timeout (default: the registry's `?timeout=`, else 10 s). */
  zkSessionTimeoutMs?: number | undefined;
  /** A pino logger (default: silent; a few warnings also go to process.emitWarning). */
  logger?: Logger | undefined;
}

/** A consumer; iterate it (when created without a handler) and close it. */
export interface Consumer extends AsyncIterable<ConsumedMessage> {
  /** Handlers running (or iterator messages not yet answered) right now. */
  readonly active: number;
  /** Pushes received and waiting for a free handler. */
  readonly pending: number;
  /**
   * Stop taking pushes, let running handlers finish and send their acks, then disconnect. Inside
   * a handler, call it without await: it waits for that handler too.
   */
  close(): Promise<void>;
}

interface Delivery {
  message: ConsumedMessage;
  receivedAt: number;
  /** When its handler started (0: waiting). */
  startedAt: number;
  /** Whether the slow-handler warning was logged for it. */
  warned: boolean;
  settled: boolean;
  /** False once the connection it came on closed (its answer would reach nobody). */
  answerable(): boolean;
  /** Answer the push: true, or false with an optional reason (sent as the nack's feedback). */
  resolve(ok: boolean, reason?: string): void;
  /** Redeliveries of this message that came while it ran: answered with its outcome. */
  followers: ((ok: boolean, reason?: string) => void)[];
}

/** A handler running this long is logged (once): it holds a slot, and the broker redelivers. */
const SLOW_HANDLER_WARN_MS = 30_000;

class SdkConsumer implements Consumer {
  private queue: Delivery[] = [];
  private head = 0;
  private running = 0;
  private closing = false;
  private readonly pullers: ((r: IteratorResult<ConsumedMessage>) => void)[] = [];
  private idle: (() => void)[] = [];
  /** The one close of this consumer (a second close() awaits the same). */
  private closed: Promise<void> | undefined;
  /** Deliveries whose handler runs (or whose iterator message is unanswered), by message id. */
  private readonly runningById = new Map<string, Delivery>();
  /** Sweeps waiting pushes past maxWaitMs and logs slow handlers while anything waits or runs. */
  private sweeper: NodeJS.Timeout | undefined;
  /** Whether the process warning about an iterator message left unanswered was emitted. */
  private warnedUnanswered = false;
  /** Whether the process warning about an undecodable push was emitted. */
  private warnedUndecodable = false;
  /**
   * Keeps the process up while the consumer is open. The pool's timers are unref'd (only open
   * connections hold a process), so between a broker's restart and the reconnect nothing held
   * it: a process whose only job was consuming exited in silence when its broker stopped.
   */
  private keepAlive: NodeJS.Timeout | undefined = setInterval(() => undefined, 2 ** 30);
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
      // `break` out of for-await: the consumer closes (a close() of the user's awaits the same).
      return: async () => {
        void this.close();
        return { value: undefined, done: true };
      },
    };
  }

  close(): Promise<void> {
    this.closed ??= this.closeOnce();
    return this.closed;
  }

  private async closeOnce(): Promise<void> {
    this.closing = true;
    clearInterval(this.keepAlive);
    this.keepAlive = undefined;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
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
    if (this.running > 0) {
      this.logger.warn(
        { running: this.running },
        "close: handlers still running, not acked (a handler that awaits close() waits for itself: call it without await there)",
      );
    }
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
    // maxPending counts pushes waiting beyond the free slots (0: none wait, free slots still fill).
    if (this.pending - Math.max(0, this.concurrency - this.running) >= this.maxPending) return false;
    const first = this.runningById.get(m.header.messageId);
    if (first !== undefined) {
      // A redelivery (the broker timed the first push out) while the first run still goes: not
      // run twice at once, and not refused either (each refusal spends an attempt: a slow handler
      // would reach the deliver limit while it works). Answered with the first run's outcome.
      this.logger.debug(
        { messageId: m.header.messageId },
        "redelivery of a message still being handled: held",
      );
      return new Promise<boolean>((resolve, reject) => first.followers.push(answerer(resolve, reject)));
    }
    return new Promise<boolean>((resolveOk, reject) => {
      const resolve = answerer(resolveOk, reject);
      let delivery: Delivery | undefined;
      try {
        const message = fromWire(m.header, m.body, (ok) => {
          if (delivery !== undefined) this.settle(delivery, ok, true);
        });
        delivery = {
          message,
          receivedAt: Date.now(),
          startedAt: 0,
          warned: false,
          settled: false,
          answerable: m.answerable,
          resolve,
          followers: [],
        };
      } catch (err) {
        // Nacked with the reason (the history's, which explain and the dead letters show: it was
        // a bare false), and said to the process once: the default logger is silent, and each
        // redelivery fails alike until the message is dead-lettered.
        const reason = `undecodable: ${err instanceof Error ? err.message : String(err)}`.slice(0, 500);
        this.logger.warn({ messageId: m.header.messageId, err }, "undecodable message nacked");
        if (!this.warnedUndecodable) {
          this.warnedUndecodable = true;
          process.emitWarning(
            `consumer of group "${this.options.groupId}": message ${m.header.messageId} could not be decoded and was nacked (${reason}); ` +
              "every redelivery fails alike until the broker dead-letters it",
            { code: "KQ_MESSAGE_UNDECODABLE" },
          );
        }
        resolve(false, reason);
        return;
      }
      this.queue.push(delivery);
      this.pump();
      this.startSweeper();
    });
  }

  /**
   * While pushes wait or handlers run: answer false to pushes that waited past maxWaitMs (pump
   * does that only when a slot frees, and a handler that never ends frees none), and log
   * handlers running past SLOW_HANDLER_WARN_MS once each.
   */
  private startSweeper(): void {
    if (this.sweeper !== undefined || this.closing) return;
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(1_000, this.maxWaitMs / 4)));
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = Date.now();
    for (let i = this.head; i < this.queue.length; i++) {
      const d = this.queue[i]!;
      // Waiting pushes are in arrival order: the first one young enough ends the sweep.
      if (now - d.receivedAt <= this.maxWaitMs) break;
      if (!d.settled) this.settle(d, false, false);
    }
    while (this.head < this.queue.length && this.queue[this.head]!.settled) this.take();
    for (const d of this.runningById.values()) {
      if (d.warned || now - d.startedAt < SLOW_HANDLER_WARN_MS) continue;
      d.warned = true;
      this.logger.warn(
        { messageId: d.message.messageId, topic: d.message.topic, runningMs: now - d.startedAt },
        "message handled for 30 s without an answer: it holds one of the consumer's slots, and the broker redelivers it after its delivery timeout",
      );
      if (this.options.handler === undefined && !this.warnedUnanswered) {
        // A loop that forgets ack() stops after `concurrency` messages; with the default (silent)
        // logger nothing said why. The process hears it once per consumer.
        this.warnedUnanswered = true;
        process.emitWarning(
          `consumer of group "${this.options.groupId}": message ${d.message.messageId} taken from its iterator has not been answered for 30 s; ` +
            `call ack() or nack() on each message: the iterator yields nothing more while ${this.concurrency} (concurrency) are unanswered`,
          { code: "KQ_MESSAGE_UNANSWERED" },
        );
      }
    }
    if (this.pending === 0 && this.running === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
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
      if (d.settled) continue;
      if (Date.now() - d.receivedAt > this.maxWaitMs || !d.answerable()) {
        // The broker has (nearly) timed this push out, or its connection is gone (the broker
        // redelivers it): running it now would only duplicate work.
        this.settle(d, false, false);
        continue;
      }
      const first = this.runningById.get(d.message.messageId);
      if (first !== undefined) {
        // The same message started meanwhile (see onPush): this push gets its outcome.
        d.settled = true;
        first.followers.push(d.resolve);
        continue;
      }
      this.running++;
      d.startedAt = Date.now();
      this.runningById.set(d.message.messageId, d);
      if (handler === undefined) {
        this.pullers.shift()?.({ value: d.message, done: false });
        continue;
      }
      Promise.resolve()
        .then(() => handler(d.message))
        .then(
          (r) => this.settle(d, r !== false, true),
          (err: unknown) => {
            // The error itself (pino logs its stack): String(err) kept only the first line, and the
            // application's own failure lost where it happened.
            this.logger.warn({ messageId: d.message.messageId, err }, "handler failed; nacked");
            // The error goes to the broker as the nack's feedback: the history's reason, which
            // the dead-letter filters search (before: always "consumer answered false").
            this.settle(d, false, true, `handler threw: ${String(err)}`.slice(0, 500));
          },
        );
    }
  }

  private settle(d: Delivery, ok: boolean, started: boolean, reason?: string): void {
    if (d.settled) return;
    d.settled = true;
    // The held redeliveries first: the newest push's ack is in time and records the delivery
    // (the first push's, after its timeout, finds it ended).
    for (const f of d.followers.splice(0)) f(ok, reason);
    d.resolve(ok, reason);
    if (!started) return;
    this.runningById.delete(d.message.messageId);
    this.running--;
    if (this.running === 0) for (const r of this.idle.splice(0)) r();
    if (!this.closing) this.pump();
  }
}

/**
 * A push's answer as the connection takes it: a boolean, or a rejection whose text the
 * connection sends as the nack's feedback (KiteqConnection answers false with String(reason)).
 */
function answerer(
  resolve: (ok: boolean) => void,
  reject: (reason: string) => void,
): (ok: boolean, reason?: string) => void {
  return (ok, reason) => (ok || reason === undefined ? resolve(ok) : reject(reason));
}

const warnedGroups = new Set<string>();

/**
 * Bindings travel through ZooKeeper only (KiteQ's /kiteq/sub): with broker addresses or a YAML
 * registry the SDK cannot apply them, and a group nobody bound on the broker gets nothing. Said
 * once per group and process, on the logger and as a Node.js process warning (the default
 * logger is silent). With a YAML registry, only for bindings the file does not hold: the brokers
 * apply the file's (it was said for every group, bound there or not).
 */
async function warnBindingsNotApplied(
  registry: RegistrySpec,
  groupId: string,
  bindings: readonly Binding[],
  logger: Logger,
): Promise<void> {
  if (warnedGroups.has(groupId)) return;
  const file = registryFilePath(registry);
  let missing = bindings;
  if (file !== undefined) {
    // Unreadable or invalid: said by the directory's start, which reads it next.
    const held = await loadRegistryFile(file).then(
      (f) => f.bindings,
      () => undefined,
    );
    if (held === undefined) return;
    missing = bindings.filter(
      (b) =>
        !held.some(
          (h) =>
            h.groupId === b.groupId &&
            h.topic === b.topic &&
            h.bindType === b.bindType &&
            (b.bindType === BindType.Fanout || h.messageType === b.messageType),
        ),
    );
    if (missing.length === 0) return;
  }
  warnedGroups.add(groupId);
  const example = missing[0]!;
  const text =
    file !== undefined
      ? `bindings of group "${groupId}" are not applied: ${missing.length} of them are not in ${file}, ` +
        "and with a YAML registry the brokers apply the bindings of their --registry-file. Add them there, e.g. " +
        `{ groupIds: ["${groupId}"], topic: ${example.topic}, ` +
        (example.bindType === BindType.Fanout
          ? "bindType: fanout }"
          : `messageType: '${example.messageType}', bindType: ${example.bindType === BindType.Regx ? "regx" : "direct"} }`)
      : `bindings of group "${groupId}" are not applied: they travel through ZooKeeper (a zk:// registry), ` +
        "and with broker addresses the broker's own bindings apply. Bind the group on the broker, e.g. " +
        `kiteq-pg bind add --group ${groupId} --topic ${example.topic}` +
        (example.bindType === BindType.Fanout
          ? " --type fanout"
          : ` --message-type '${example.messageType}'${example.bindType === BindType.Regx ? " --type regx" : ""}`);
  logger.warn({ bindings: missing.length }, text);
  process.emitWarning(text, { code: "KQ_BINDINGS_NOT_APPLIED" });
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
 * Create a consumer: connect to every broker of the bound topics, publish the group's bindings
 * (ZooKeeper registry) once one broker is connected, and start taking pushes (else KQ_NO_BROKER
 * after connectTimeoutMs, with nothing published).
 */
export async function createConsumer(options: ConsumerOptions): Promise<Consumer> {
  checkConsumerOptions(options);
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
  if (!zk && bindings.length > 0)
    await warnBindingsNotApplied(options.registry, options.groupId, bindings, logger);
  const directory = createDirectory(options.registry, logger, {
    sessionTimeoutMs: options.zkSessionTimeoutMs,
    startTimeoutMs: options.connectTimeoutMs ?? 10_000,
  });
  const consumer = new SdkConsumer(options, directory, logger);
  try {
    const topics = [...new Set(bindings.map((b) => b.topic))];
    await directory.start(topics, (brokers) => consumer.pool.update(brokers));
    // Bindings are written once a broker is connected: a consumer that never starts (no broker
    // serves its topic, a typo) must not leave a persistent binding that owes its group messages.
    await waitConnected(consumer.pool, options.connectTimeoutMs ?? 10_000, topics, options.registry);
    await directory.publishBindings(options.groupId, bindings);
    // A broker learns of new bindings by a ZooKeeper watch, a moment later; what is published
    // before it applies them is not owed to this group. It answers a heartbeat of a new
    // connection once it has re-read them, so resolving after the answers means the brokers
    // connected now deliver what is published from here on (static brokers answer at once).
    await Promise.all(
      consumer.pool
        .connections()
        .map((c) =>
          withDeadline(
            c.request(CommandType.HEARTBEAT, encodeHeartBeat({ version: Date.now() })),
            3_000,
          ).catch(() => undefined),
        ),
    );
  } catch (err) {
    await consumer.close().catch(() => undefined);
    throw err;
  }
  return consumer;
}
