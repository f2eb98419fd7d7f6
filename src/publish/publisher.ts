/**
 * The publish path: validate (KiteQ's rules and the limits), check the group (with secrets, a
 * session publishes only as its own group), rate-limit, then either hand a fly message to the
 * router without storing it, or group-commit it and answer MESSAGE_STORE_ACK true only after
 * the transaction that holds it committed (false with the reason on any failure). A batch that
 * fails on its data is split until only the bad messages are refused (split-write.ts).
 */

import { ErrorCode, isDataError, sqlState, toKiteqError } from "../errors.js";
import { LatencyHistogram } from "../latency.js";
import type { Logger } from "../log.js";
import { RateLimitedLog } from "../log-limit.js";
import type { BytesMessage, StringMessage } from "../protocol/messages.js";
import { GroupCommitter } from "../store/group-commit.js";
import type { PublishRecord, PublishResult } from "../store/messages.js";
import { DEFAULT_PUBLISH_LIMITS, type PublishLimits } from "./limits.js";
import { type ItemOutcome, writeSplitting } from "./split-write.js";
import { type NormalisedHeader, validatePublish } from "./validate.js";

/** What the publisher needs of a client connection (a Session). */
export interface PublishSession {
  readonly id: string;
  readonly log: Logger;
  /** The group it authenticated as. */
  readonly groupId: string | undefined;
  sendStoreAck(opaque: number, messageId: string, status: boolean, feedback: string): void;
  /** Set once it publishes an uncommitted message: check-backs prefer it (see Session). */
  answersTxChecks?: boolean;
}

/** Options of a Publisher. */
export interface PublisherOptions {
  maxBatch: number;
  concurrency: number;
  /** Publishes waiting before a batch is written beside one in flight (GroupCommitOptions.parallelFrom). */
  parallelFrom?: number;
  windowMs?: number;
  /** What a header may hold; default DEFAULT_PUBLISH_LIMITS. */
  limits?: PublishLimits;
  /** Secrets configured: a publish's header groupId must be the session's group. */
  ownGroupOnly?: boolean;
  /**
   * Several shards (one writer each): the shard of a messageId. Each shard's publishes are
   * group-committed apart, and each ack waits for its own shard's commit only.
   */
  shardOf?: (messageId: string) => number;
  /** Why publishes to `shard` are refused right now (it is down), or undefined. */
  shardDown?: (shard: number) => string | undefined;
}

/** What the publisher needs from the rest of the broker. */
export interface PublishHooks {
  /** Whether this node serves the topic. */
  servesTopic(topic: string): boolean;
  /** false when the receive-rate limit is exhausted. */
  admit(): boolean;
  /** Bound groups owed a delivery of a committed message, and whether this node pre-claims it. */
  planDeliveries(header: NormalisedHeader): { groupId: string; claimedBy: string | null }[];
  /** A fly message: deliver to online consumers now, store nothing. */
  deliverFly(header: NormalisedHeader, body: Buffer, isString: boolean): void;
  /**
   * After a batch was written: the records with their results (undefined: the record, or the
   * whole write, failed), for the local fast path (push what was stored).
   */
  afterWrite(
    records: readonly PublishRecord[],
    results: readonly (PublishResult | undefined)[] | undefined,
    shard: number,
  ): void;
}

/** Publishes accepted but not yet written, at most (a few seconds of full speed). */
const MAX_PENDING_PUBLISHES = 50_000;

/**
 * Bytes of the publishes accepted but not yet written, at most (bodies, plus PUBLISH_OVERHEAD_BYTES
 * each). Counted in messages alone, one client pipelining 1 MB bodies faster than PostgreSQL stores
 * them grew a broker to 4.8 GB (and its sends timed out all the same); at 64 MiB the refusals
 * start within a second of writes at this machine's pace, and small messages meet the count first.
 */
export const MAX_PENDING_PUBLISH_BYTES = 64 * 1024 * 1024;

/**
 * Bytes of one publish transaction, at most (at least one message): its bodies travel as one
 * parameter, which 1,000 bodies of 2 MB would take past PostgreSQL's 1 GB limit on a value.
 */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;

/** What a publish weighs beside its body: its header fields and the record around them. */
const PUBLISH_OVERHEAD_BYTES = 512;

/** A publish's weight in the pending bound and the batch bound. */
function publishBytes(bodyLength: number, properties: readonly { key: string; value: string }[]): number {
  let bytes = bodyLength + PUBLISH_OVERHEAD_BYTES;
  for (const p of properties) bytes += p.key.length + p.value.length;
  return bytes;
}

/** Write one batch of records; throws on any database error. */
export type PublishWriter = (records: PublishRecord[]) => Promise<PublishResult[]>;

/** Counters exposed as metrics. */
export interface PublishCounters {
  accepted: number;
  refused: number;
  failed: number;
  fly: number;
  duplicates: number;
}

/** Validates, batches and acknowledges publishes. */
export class Publisher {
  /** From a validated publish to its store acknowledgement (batch wait + transaction). */
  readonly storeLatency = new LatencyHistogram();
  readonly counters: PublishCounters = {
    accepted: 0,
    refused: 0,
    failed: 0,
    fly: 0,
    duplicates: 0,
  };
  /** Batches retried in halves after a data error (each split counts once). */
  splits = 0;
  /** One group committer per shard (index = shard). */
  private readonly committers: GroupCommitter<PublishRecord, ItemOutcome<PublishResult>>[];
  private readonly shardOf: ((messageId: string) => number) | undefined;
  private readonly shardDown: ((shard: number) => string | undefined) | undefined;
  private readonly limits: PublishLimits;
  private readonly ownGroupOnly: boolean;
  /** Per-message error lines, rate-limited (a database that is down fails every publish). */
  private readonly limitedLog: RateLimitedLog;
  private acceptingWork = true;

  constructor(
    private readonly hooks: PublishHooks,
    write: PublishWriter | readonly PublishWriter[],
    options: PublisherOptions,
    private readonly log: Logger,
  ) {
    this.limits = options.limits ?? DEFAULT_PUBLISH_LIMITS;
    this.ownGroupOnly = options.ownGroupOnly === true;
    this.limitedLog = new RateLimitedLog(log);
    const writers = typeof write === "function" ? [write] : write;
    this.shardOf = writers.length > 1 ? options.shardOf : undefined;
    this.shardDown = writers.length > 1 ? options.shardDown : undefined;
    this.committers = writers.map(
      (w, shard) =>
        new GroupCommitter<PublishRecord, ItemOutcome<PublishResult>>({
          maxBatch: options.maxBatch,
          maxBatchWeight: MAX_BATCH_BYTES,
          concurrency: options.concurrency,
          parallelFrom: options.parallelFrom,
          windowMs: options.windowMs,
          write: (records) => this.writeBatch(records, w),
          // Pushes of what was stored follow the start of the next publish transaction and the
          // producers' answers (see GroupCommitter.finish).
          written: (records, outcomes) => this.afterWrite(records, outcomes, shard),
        }),
    );
  }

  /**
   * Hand a written batch to the fast path. What it fails to push (a bug) is not lost: the
   * deliveries are stored and claimed again when their lease runs out; the producers still hear
   * that their messages were stored.
   */
  private afterWrite(
    records: readonly PublishRecord[],
    outcomes: readonly ItemOutcome<PublishResult>[] | undefined,
    shard: number,
  ): void {
    try {
      this.hooks.afterWrite(
        records,
        outcomes?.map((o) => (o.ok ? o.result : undefined)),
        shard,
      );
    } catch (err) {
      this.limitedLog.error(
        "push after publish failed",
        { code: ErrorCode.Internal, batch: records.length, shard, err: String(err) },
        "pushing a stored batch failed; its deliveries are claimed again when their lease runs out",
      );
    }
  }

  private writeBatch(records: PublishRecord[], write: PublishWriter): Promise<ItemOutcome<PublishResult>[]> {
    return writeSplitting(records, write, {
      splittable: isDataError,
      onSplit: (items, err) => {
        this.splits++;
        this.limitedLog.warn(
          "publish batch split",
          { code: ErrorCode.StoreFailed, sqlState: sqlState(err), batch: items.length },
          "publish batch failed on its data; writing it in halves to refuse only the bad messages",
        );
      },
    });
  }

  /** Batches written so far and messages in them. */
  get batchStats(): { batches: number; items: number; failures: number } {
    if (this.committers.length === 1) return this.committers[0]!.stats;
    const sum = { batches: 0, items: 0, failures: 0 };
    for (const c of this.committers) {
      sum.batches += c.stats.batches;
      sum.items += c.stats.items;
      sum.failures += c.stats.failures;
    }
    return sum;
  }

  /** Handle one published message from `session` (answers it, always). */
  publish(
    session: PublishSession,
    opaque: number,
    message: BytesMessage | StringMessage,
    isString: boolean,
  ): void {
    const messageId = message.header.messageId;
    if (!this.acceptingWork) {
      this.refuse(session, opaque, messageId, ErrorCode.ShuttingDown, "broker shutting down");
      return;
    }
    const result = validatePublish(message.header, this.hooks.servesTopic, Date.now(), this.limits);
    if (!result.ok) {
      this.refuse(session, opaque, messageId, ErrorCode.MessageInvalid, result.reason);
      return;
    }
    if (this.ownGroupOnly && result.header.groupId !== session.groupId) {
      this.refuse(
        session,
        opaque,
        messageId,
        ErrorCode.Forbidden,
        `invalid groupId "${result.header.groupId}": this connection authenticated as group "${session.groupId ?? ""}" and may publish only as that group`,
      );
      return;
    }
    if (!this.hooks.admit()) {
      this.refuse(
        session,
        opaque,
        messageId,
        ErrorCode.RateLimited,
        "receive rate limit exceeded, retry later",
      );
      return;
    }
    // The stored (lower-case) id decides the shard, as history lookups and TX_ACKs hash it.
    const shard = this.shardOf === undefined ? 0 : this.shardOf(result.header.messageId);
    const committer = this.committers[shard]!;
    // Back-pressure when the store falls behind (slow disk, database restarting): a bounded queue
    // and a clear refusal, never unbounded memory.
    if (committer.pending >= MAX_PENDING_PUBLISHES) {
      this.refuse(
        session,
        opaque,
        messageId,
        ErrorCode.RateLimited,
        "store busy: too many publishes waiting, retry later",
      );
      return;
    }
    const header = result.header;
    // A shard that is down: refused at once with the reason, the other shards keep flowing.
    const down = this.shardDown?.(shard);
    if (down !== undefined && !header.fly) {
      this.counters.failed++;
      this.limitedLog.error(
        `publish not stored shard ${shard} down`,
        { code: ErrorCode.StoreFailed, connection: session.id, messageId, shard, err: down },
        "publish not stored",
      );
      // "not stored": the outcome is known (nothing was written), unlike a "store failed" whose
      // commit may have happened; KiteQ clients see status false either way and send again.
      session.sendStoreAck(opaque, messageId, false, `not stored: ${down}; retry later`);
      return;
    }
    const body = isString
      ? Buffer.from((message as StringMessage).body, "utf8")
      : (message as BytesMessage).body;
    if (header.fly) {
      this.counters.fly++;
      this.hooks.deliverFly(header, body, isString);
      session.sendStoreAck(opaque, messageId, true, "fly message accepted");
      return;
    }
    // The same in bytes: a few clients pipelining large bodies faster than the store takes them.
    const bytes = publishBytes(body.length, header.properties);
    if (committer.pendingWeight > 0 && committer.pendingWeight + bytes > MAX_PENDING_PUBLISH_BYTES) {
      this.refuse(
        session,
        opaque,
        messageId,
        ErrorCode.RateLimited,
        `store busy: ${Math.round(committer.pendingWeight / (1024 * 1024))} MiB of publishes waiting, retry later`,
      );
      return;
    }
    if (!header.commit) session.answersTxChecks = true;
    const record: PublishRecord = {
      messageId: header.messageId,
      topic: header.topic,
      messageType: header.messageType,
      groupId: header.groupId,
      commit: header.commit,
      expiresAt: header.expiresAt,
      deliverLimit: header.deliverLimit,
      createdAt: header.createdAt,
      properties: header.properties,
      snappy: header.snappy,
      deliverAt: header.deliverAt,
      bodyIsString: isString,
      // A view into the read buffer would pin it until the batch is written: copy small bodies.
      body: Buffer.from(body),
      deliveries: header.commit ? this.hooks.planDeliveries(header) : [],
    };
    const enqueuedAt = performance.now();
    committer.enqueue(
      record,
      (err, outcome) => {
        if (err === undefined && outcome?.ok === true) {
          const r = outcome.result;
          this.counters.accepted++;
          this.storeLatency.since(enqueuedAt, performance.now());
          if (r.duplicate) this.counters.duplicates++;
          session.sendStoreAck(opaque, messageId, true, r.duplicate ? "duplicate: already stored" : "stored");
          return;
        }
        this.counters.failed++;
        const cause = err ?? (outcome?.ok === false ? outcome.error : undefined);
        const e = toKiteqError(cause, { connection: session.id, messageId }, ErrorCode.StoreFailed);
        const state = sqlState(cause);
        this.limitedLog.error(
          `publish not stored ${e.code} ${state ?? ""}`,
          { code: e.code, sqlState: state, connection: session.id, messageId, err: e.message },
          "publish not stored",
        );
        const sqlstate = state === undefined ? "" : ` (SQLSTATE ${state})`;
        // A write refused before anything was sent to the store (its shard down) is not stored for
        // sure; any other failure may have committed (a connection lost after the COMMIT went out).
        session.sendStoreAck(
          opaque,
          messageId,
          false,
          e.context.stored === false
            ? `not stored: ${e.message}; retry later`
            : `store failed: ${e.message}${sqlstate}`,
        );
      },
      bytes,
    );
  }

  /** Stop taking publishes and wait until every accepted one is written and answered. */
  async drain(): Promise<void> {
    this.acceptingWork = false;
    await Promise.all(this.committers.map((c) => c.drain()));
    this.limitedLog.close();
  }

  private refuse(
    session: PublishSession,
    opaque: number,
    messageId: string,
    code: string,
    reason: string,
  ): void {
    this.counters.refused++;
    session.log.debug({ code, messageId, reason }, "publish refused");
    session.sendStoreAck(opaque, messageId, false, reason);
  }
}
