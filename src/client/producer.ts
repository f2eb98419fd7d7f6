/**
 * The SDK producer: publishes to any broker serving the topic, retries a send whose broker
 * failed on another one with the same header (messageId and createTime unchanged, so the
 * broker's idempotency stores it once), and settles every send within `sendTimeoutMs`.
 */
import { withDeadline } from "../deadline.js";
import { ErrorCode, KiteqError, toKiteqError } from "../errors.js";
import { type Logger, silentLogger } from "../log.js";
import { type Header, TxStatus } from "../protocol/messages.js";
import { type BrokerDirectory, createDirectory, type RegistrySpec } from "./directory.js";
import { checkMessageObject, type OutgoingMessage, type SendResult, toWire } from "./message.js";
import { checkProducerOptions } from "./options.js";
import { BrokerPool } from "./pool.js";

/** A local transaction's or a check-back's verdict. */
export type TxOutcome = "commit" | "rollback";
/** A check-back answer: "unknown" makes the broker ask again later. */
export type TxCheckAnswer = TxOutcome | "unknown";

/** Options of {@link createProducer}. */
export interface ProducerOptions {
  /** `zk://host:port[,host:port][?timeout=4s]`, a KiteQ registry YAML file, or `host:port` addresses. */
  registry: RegistrySpec;
  /** The publishing group (header.groupId; the broker asks this group's producers about 2PC messages). */
  groupId: string;
  /** The group's secret, when the brokers check handshakes (their KITEQ_SECRETS). */
  secretKey?: string | undefined;
  /** Topics this producer publishes to (brokers are discovered per topic). */
  topics: readonly string[];
  /** Every send resolves or rejects within this bound (default 15,000 ms; at least 100). */
  sendTimeoutMs?: number | undefined;
  /** Bound of one connect or one publish attempt on one broker (default 5,000 ms). */
  requestTimeoutMs?: number | undefined;
  /** Heartbeat interval per connection (default 3,000 ms; 3 misses drop the connection). */
  heartbeatMs?: number | undefined;
  /** Snappy-compress bodies of at least this many bytes (default 0: never). */
  compressAboveBytes?: number | undefined;
  /**
   * How long createProducer waits for a ZooKeeper session (zk:// registry; else KQ_REGISTRY_FAILED)
   * and then for a first broker connection (else KQ_NO_BROKER); default 10,000 ms each.
   */
  connectTimeoutMs?: number | undefined;
  /** ZooKeeper session timeout (default: the registry's `?timeout=`, else 10 s). */
  zkSessionTimeoutMs?: number | undefined;
  /** A pino logger (default: silent). */
  logger?: Logger | undefined;
}

/** A producer; see {@link createProducer}. */
export interface Producer {
  /** Publish; resolves once the broker stored it (stored means durable: the broker's ack after commit). */
  send(message: OutgoingMessage): Promise<SendResult>;
  /**
   * Two-phase commit: store `message` uncommitted, run `localTransaction`, then tell the broker
   * to commit or roll back. A throw of the local transaction rolls back and is rethrown. Should
   * the verdict be lost, the broker asks again (answered from memory, else by onTxCheck).
   */
  sendTx(
    message: OutgoingMessage,
    localTransaction: () => Promise<TxOutcome> | TxOutcome,
  ): Promise<SendResult & { outcome: TxOutcome }>;
  /** Answer the broker's check-backs about uncommitted messages of this group. */
  onTxCheck(handler: (header: Readonly<Header>) => Promise<TxCheckAnswer> | TxCheckAnswer): void;
  /**
   * Wait for sends in flight to settle (bounded by sendTimeoutMs), then close every connection;
   * a later send rejects with KQ_CLIENT_CLOSED. Every call resolves with the same close.
   */
  close(): Promise<void>;
}

/** Verdicts remembered to answer check-backs whose TX_ACK was lost. */
const REMEMBERED_VERDICTS = 10_000;

/** Feedback texts of a store ack false that another attempt (or broker) may turn into success. */
const RETRYABLE_FEEDBACK = /shutting down|retry later|store failed|not stored|busy/i;
/**
 * A kiteq-pg broker's refusal whose outcome is known: nothing was written (the message's shard of
 * the store is down). "store failed" is not: its commit may have happened.
 */
const NOT_STORED_FEEDBACK = /^not stored: /;
/**
 * A store failure caused by the message itself (PostgreSQL's data exception and integrity
 * classes, SQLSTATE 22xxx and 23xxx): no other attempt can store it.
 */
const MESSAGE_FAULT_FEEDBACK = /SQLSTATE 2[23][0-9A-Z]{3}/;
/**
 * Backoff between attempts the store refused (a shard down, PostgreSQL away): doubling from
 * STORE_BACKOFF_MS up to STORE_BACKOFF_MAX_MS, so a producer asks a few times a second at most
 * instead of every ~400 ms for its whole send timeout, whatever the number of producers.
 */
const STORE_BACKOFF_MS = 100;
const STORE_BACKOFF_MAX_MS = 2_000;
/**
 * No attempt starts with less time left than this: a publish the broker stores after the caller
 * was told KQ_TIMEOUT is the ambiguous case, and an attempt with a few ms left makes it likely.
 */
const MIN_ATTEMPT_MS = 100;

class SdkProducer implements Producer {
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly verdicts = new Map<string, TxOutcome>();
  /** Messages (lower-case ids) stored uncommitted whose local transaction still runs. */
  private readonly runningTx = new Set<string>();
  private warnedCheckAnswer = false;
  private checkHandler: ((header: Readonly<Header>) => Promise<TxCheckAnswer> | TxCheckAnswer) | undefined;
  private closed = false;
  /** The one close of this producer (see close()). */
  private closing: Promise<void> | undefined;
  readonly pool: BrokerPool;
  private readonly sendTimeoutMs: number;
  private readonly compressAboveBytes: number;

  constructor(
    private readonly options: ProducerOptions,
    private readonly directory: BrokerDirectory,
    private readonly logger: Logger,
  ) {
    this.sendTimeoutMs = options.sendTimeoutMs ?? 15_000;
    this.compressAboveBytes = options.compressAboveBytes ?? 0;
    this.pool = new BrokerPool({
      groupId: options.groupId,
      secretKey: options.secretKey,
      logger,
      heartbeatMs: options.heartbeatMs ?? 3_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
      reconnectMinMs: 100,
      reconnectMaxMs: 5_000,
      onTxCheck: (header) => this.answerCheck(header),
    });
  }

  send(message: OutgoingMessage): Promise<SendResult> {
    return this.track(async () => {
      const { header, body } = this.prepare(message);
      await this.publish(header, body);
      return { messageId: header.messageId, createTime: header.createTime };
    });
  }

  sendTx(
    message: OutgoingMessage,
    localTransaction: () => Promise<TxOutcome> | TxOutcome,
  ): Promise<SendResult & { outcome: TxOutcome }> {
    return this.track(async () => {
      const { header, body } = this.prepare(message);
      // Checked before the message is stored: a non-function was called after the store, its
      // TypeError then rolled the stored message back.
      checkFunction("sendTx", "localTransaction", localTransaction);
      if (message.fly === true) {
        // KiteQ refuses it ("fly must be committed"): a fly message is never stored, so it could
        // not wait for the local transaction.
        throw new KiteqError(
          ErrorCode.MessageInvalid,
          "sendTx cannot send a fly message: fly messages are never stored, so they cannot wait for a commit",
          {
            key: "fly",
            topic: message.topic,
          },
        );
      }
      header.commit = false;
      const id = header.messageId.toLowerCase();
      // From the publish on: a check-back may come before the store ack (see answerCheck).
      this.runningTx.add(id);
      let outcome: TxOutcome;
      try {
        await this.publish(header, body);
      } catch (err) {
        this.runningTx.delete(id);
        throw err;
      }
      try {
        const answer: unknown = await localTransaction();
        if (answer !== "commit" && answer !== "rollback") {
          // A typo ("comit") must not roll back in silence.
          throw new KiteqError(
            ErrorCode.ConfigInvalid,
            `the local transaction returned ${JSON.stringify(answer) ?? String(answer)}, not "commit" or "rollback": rolled back`,
            { messageId: header.messageId, topic: header.topic },
          );
        }
        outcome = answer;
      } catch (err) {
        this.verdict(header, "rollback");
        throw err;
      } finally {
        this.runningTx.delete(id);
      }
      this.verdict(header, outcome);
      return { messageId: header.messageId, createTime: header.createTime, outcome };
    });
  }

  onTxCheck(handler: (header: Readonly<Header>) => Promise<TxCheckAnswer> | TxCheckAnswer): void {
    // A non-function failed at each check-back, answered "unknown" until the give-up's rollback.
    checkFunction("onTxCheck", "handler", handler);
    this.checkHandler = handler;
  }

  close(): Promise<void> {
    // One close: a second close() (two shutdown hooks) resolved at once, before the sends in
    // flight had settled and the connections closed; it now awaits the same.
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.closed = true;
    // Bounded: a sendTx whose local transaction still runs does not hold close() beyond it (its
    // verdict then goes unsent, and the broker asks the group's producers again later).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise<void>((r) => {
        timer = setTimeout(r, this.sendTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (this.inFlight.size > 0) {
      this.logger.warn(
        { inFlight: this.inFlight.size },
        "close: sends still in flight after sendTimeoutMs (local transactions running)",
      );
    }
    // TX_ACKs written in the last turn leave with the next flush.
    await new Promise((r) => setTimeout(r, 20));
    this.pool.close();
    await this.directory.close();
  }

  private prepare(message: OutgoingMessage): ReturnType<typeof toWire> {
    if (this.closed) throw new KiteqError(ErrorCode.ClientClosed, "producer closed");
    checkMessageObject(message);
    if (!this.options.topics.includes(message.topic)) {
      // Brokers are discovered per topic: one not listed would wait for sendTimeoutMs for nothing.
      throw new KiteqError(
        ErrorCode.ConfigInvalid,
        `topic "${message.topic}" is not among the producer's topics (${this.options.topics.join(", ")})`,
        { topic: message.topic, key: "topics" },
      );
    }
    return toWire(message, this.options.groupId, this.compressAboveBytes);
  }

  private track<T>(work: () => Promise<T>): Promise<T> {
    const p = work();
    this.inFlight.add(p);
    const forget = () => this.inFlight.delete(p);
    p.then(forget, forget);
    return p;
  }

  /** Remember the verdict and send it (TX_ACK) to a broker of the topic; a lost one is asked again. */
  private verdict(header: Header, outcome: TxOutcome): void {
    // Keyed lower-case: brokers ask about an id as they store it (kiteq-pg lower-cases ids), and
    // a caller's upper-case id missed the lookup (its commit answered "unknown", then rolled back).
    this.verdicts.set(header.messageId.toLowerCase(), outcome);
    if (this.verdicts.size > REMEMBERED_VERDICTS) {
      const oldest = this.verdicts.keys().next().value;
      if (oldest !== undefined) this.verdicts.delete(oldest);
    }
    const target = this.pool.pick(header.topic, new Set());
    const status = outcome === "commit" ? TxStatus.COMMIT : TxStatus.ROLLBACK;
    target?.conn.sendTxAck(
      header,
      status,
      `local transaction ${outcome === "commit" ? "committed" : "rolled back"}`,
    );
  }

  private async answerCheck(header: Header): Promise<number> {
    const id = header.messageId.toLowerCase();
    const known = this.verdicts.get(id);
    let answer: TxCheckAnswer = known ?? "unknown";
    // Its local transaction still runs here (longer than the broker's --tx-check-seconds): only
    // "unknown" is true. Asked, onTxCheck would look for the transaction's rows, not find them
    // (not committed yet) and could answer rollback: the broker rolled back, the commit that
    // followed came too late, and sendTx still resolved "commit" for a message never delivered.
    if (known === undefined && this.runningTx.has(id)) return TxStatus.UNKNOWN;
    if (known === undefined && this.checkHandler !== undefined) {
      try {
        const given: unknown = await this.checkHandler(header);
        if (given === "commit" || given === "rollback" || given === "unknown") answer = given;
        else {
          // A typo ("comit") must not become "unknown", and at the give-up a rollback, in silence.
          const text = `onTxCheck returned ${JSON.stringify(given) ?? String(given)} for message ${header.messageId}, not "commit", "rollback" or "unknown": answered unknown (at the give-up age the broker rolls it back)`;
          this.logger.warn({ messageId: header.messageId }, text);
          // The SDK's logger is silent by default: the process hears it once per producer.
          if (!this.warnedCheckAnswer) {
            this.warnedCheckAnswer = true;
            process.emitWarning(text, { code: "KQ_TX_CHECK_ANSWER_INVALID" });
          }
          answer = "unknown";
        }
      } catch (err) {
        // The error itself, with its stack (see the consumer's handler failures).
        this.logger.warn({ messageId: header.messageId, err }, "tx check handler failed; answered unknown");
        answer = "unknown";
      }
    }
    return answer === "commit"
      ? TxStatus.COMMIT
      : answer === "rollback"
        ? TxStatus.ROLLBACK
        : TxStatus.UNKNOWN;
  }

  /** Publish `header` on some broker of its topic until stored, refused for good, or out of time. */
  private async publish(header: Header, body: Buffer | string): Promise<void> {
    const started = Date.now();
    const deadline = started + this.sendTimeoutMs;
    const context = { messageId: header.messageId, topic: header.topic };
    const avoid = new Set<string>();
    let lastError: unknown;
    let attempts = 0;
    let storeRefusals = 0;
    /** Attempts of unknown outcome: no store ack came, or "store failed" (its commit may be lost). */
    let unanswered = 0;
    /** The last attempt was refused by the store with nothing written ("not stored"). */
    let storeDown = false;
    for (;;) {
      const remaining = deadline - Date.now();
      // Also the first attempt: one sent with a few ms left is a store the caller hears of as a failure.
      if (remaining < MIN_ATTEMPT_MS) throw this.giveUp(header, attempts, unanswered, lastError, storeDown);
      if (this.pool.isClosed) throw new KiteqError(ErrorCode.ClientClosed, "producer closed", context);
      const target = this.pool.pick(header.topic, avoid);
      if (target === undefined) {
        await this.pool.waitChange(Math.min(remaining - MIN_ATTEMPT_MS, 250));
        continue;
      }
      attempts++;
      try {
        const ack = await withDeadline(target.conn.publish(header, body), remaining, "store ack");
        if (ack.status) return;
        if (!RETRYABLE_FEEDBACK.test(ack.feedback) || MESSAGE_FAULT_FEEDBACK.test(ack.feedback)) {
          throw new KiteqError(ErrorCode.SendRefused, ack.feedback, { ...context, broker: target.address });
        }
        storeDown = NOT_STORED_FEEDBACK.test(ack.feedback);
        if (storeDown) storeRefusals++;
        else if (/store failed/i.test(ack.feedback)) {
          storeRefusals++;
          unanswered++;
        }
        lastError = new KiteqError(ErrorCode.SendRefused, `refused: ${ack.feedback}`, {
          ...context,
          broker: target.address,
        });
      } catch (err) {
        storeDown = false;
        if (err instanceof KiteqError && err.code === ErrorCode.SendRefused) throw err;
        if (err instanceof KiteqError && err.code === ErrorCode.FrameInvalid) {
          // Too large for any broker (KiteQ's packet limit): no other attempt can store it.
          throw new KiteqError(ErrorCode.MessageInvalid, `message too large: ${err.message}`, context, {
            cause: err,
          });
        }
        unanswered++;
        lastError = toKiteqError(err, { ...context, broker: target.address });
        if (lastError instanceof KiteqError && lastError.code === ErrorCode.Timeout) {
          this.pool.suspect(target.address, 2 * this.pool.options.requestTimeoutMs);
        }
      }
      avoid.add(target.address);
      this.logger.debug(
        { ...context, broker: target.address, err: String(lastError) },
        "send attempt failed",
      );
      const backoff =
        storeRefusals > 0
          ? Math.min(STORE_BACKOFF_MS * 2 ** (storeRefusals - 1), STORE_BACKOFF_MAX_MS)
          : Math.min(50 * attempts, 500);
      // Never past the deadline: the caller hears by sendTimeoutMs, not up to a backoff later.
      await sleep(Math.min(backoff * (0.5 + Math.random()), Math.max(0, deadline - Date.now())));
    }
  }

  /**
   * The error of a send out of time: KQ_NO_BROKER when nothing was sent, or when every attempt
   * was refused before storing (shutting down, busy): not stored; KQ_STORE_FAILED when so and
   * the last refusal was the store's (its shard down); KQ_TIMEOUT when an attempt's outcome is
   * unknown (it may have been stored: a resend with the same messageId is stored once).
   */
  private giveUp(
    header: Header,
    attempts: number,
    unanswered: number,
    lastError: unknown,
    storeDown: boolean,
  ): KiteqError {
    const context = { messageId: header.messageId, topic: header.topic, attempts };
    const last = lastError instanceof Error ? lastError.message : String(lastError);
    if (attempts > 0 && unanswered === 0 && storeDown) {
      return new KiteqError(
        ErrorCode.StoreFailed,
        `not stored: the store refused it within sendTimeoutMs (${this.sendTimeoutMs} ms), ${attempts} attempt(s), the last ${last}`,
        context,
        { cause: lastError },
      );
    }
    if (attempts === 0) {
      return new KiteqError(
        ErrorCode.NoBroker,
        `no broker of topic "${header.topic}" reachable within sendTimeoutMs (${this.sendTimeoutMs} ms): not sent`,
        context,
      );
    }
    if (unanswered === 0) {
      return new KiteqError(
        ErrorCode.NoBroker,
        `not stored: no broker of topic "${header.topic}" took it within sendTimeoutMs (${this.sendTimeoutMs} ms); ${attempts} attempt(s) refused, the last ${last}`,
        context,
        { cause: lastError },
      );
    }
    return new KiteqError(
      ErrorCode.Timeout,
      `outcome unknown: not confirmed stored within sendTimeoutMs (${this.sendTimeoutMs} ms), ${attempts} attempt(s), the last: ${last}; it may have been stored: resend with the same messageId (${header.messageId}), which the broker stores once`,
      context,
      { cause: lastError },
    );
  }
}

/** KQ_CONFIG_INVALID unless `value` is a function (for plain JavaScript callers). */
function checkFunction(method: string, name: string, value: unknown): void {
  if (typeof value !== "function") {
    throw new KiteqError(
      ErrorCode.ConfigInvalid,
      `${method}: ${name} must be a function, not ${value === null ? "null" : typeof value}`,
      { key: name },
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Create a producer: discover the brokers of `topics` through `registry`, connect, and resolve
 * once at least one broker is connected (else reject with KQ_NO_BROKER after connectTimeoutMs).
 */
export async function createProducer(options: ProducerOptions): Promise<Producer> {
  checkProducerOptions(options);
  const logger = (options.logger ?? silentLogger).child({ groupId: options.groupId, role: "producer" });
  const directory = createDirectory(options.registry, logger, {
    sessionTimeoutMs: options.zkSessionTimeoutMs,
    startTimeoutMs: options.connectTimeoutMs ?? 10_000,
  });
  const producer = new SdkProducer(options, directory, logger);
  try {
    await directory.start(options.topics, (brokers) => producer.pool.update(brokers));
    await waitConnected(producer.pool, options.connectTimeoutMs ?? 10_000, options.topics, options.registry);
  } catch (err) {
    await producer.close().catch(() => undefined);
    throw err;
  }
  return producer;
}

/**
 * Resolve once `pool` has a connection, else reject with KQ_NO_BROKER after `ms`; `topics` and
 * `registry` name what was looked up when the registry listed no broker at all.
 */
export async function waitConnected(
  pool: BrokerPool,
  ms: number,
  topics: readonly string[],
  registry: RegistrySpec,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (pool.connections().length === 0) {
    const remaining = deadline - Date.now();
    const known = pool.describe();
    // A handshake refused by every broker (a wrong or missing secretKey) will not pass on a
    // retry: said at once with its own code (it was KQ_NO_BROKER after connectTimeoutMs).
    if (known.length > 0 && known.every((b) => b.lastErrorCode === ErrorCode.AuthRefused)) {
      throw new KiteqError(
        ErrorCode.AuthRefused,
        `every broker refused the handshake of group "${pool.options.groupId}": ${known.map((b) => `${b.address} (${b.lastError})`).join(", ")}; check groupId and secretKey`,
        { brokers: known.map((b) => b.address).join(","), key: "secretKey" },
      );
    }
    if (remaining <= 0) {
      const brokers = pool.describe();
      // It said "the registry names no broker for these topics", naming neither.
      const named = topics.map((t) => JSON.stringify(t)).join(", ");
      const where =
        typeof registry === "string" && registry.trim().startsWith("zk://")
          ? ` (no broker registered under ${topics.map((t) => `/kiteq/server/${t}`).join(", ")} in ZooKeeper ${registry.trim()})`
          : "";
      const why =
        brokers.length === 0
          ? `the registry names no broker for topic ${named}${where}`
          : brokers
              .map((b) => `${b.address}${b.lastError === undefined ? "" : ` (${b.lastError})`}`)
              .join(", ");
      throw new KiteqError(ErrorCode.NoBroker, `no broker connected within ${ms} ms: ${why}`, {
        brokers: brokers.map((b) => b.address).join(","),
        // None for a consumer of the broker's own bindings (no topic of its own).
        ...(topics.length > 0 ? { topic: topics.join(",") } : {}),
      });
    }
    await pool.waitChange(Math.min(remaining, 250));
  }
}
