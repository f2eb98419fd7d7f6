/**
 * Producers' TX_ACKs (their own after the local transaction, or answers to the broker's checks):
 * commit, rollback or unknown, group-committed like the other hot-path writes, so a burst of
 * commits is one transaction. The broker never answers a TX_ACK.
 *
 * Commit path: the deliveries are planned with the Dispatcher under the pending row's lock, the
 * ones for groups consuming on this node inserted pre-claimed (local fast path) and pushed from
 * memory after the commit via Dispatcher.afterCommit; the others inserted unclaimed, with one
 * NOTIFY kiteq_due per transaction, for whichever node has a consumer of the group.
 */
import type pg from "pg";
import { ErrorCode, toKiteqError } from "../errors.js";
import { RateLimitedLog } from "../log-limit.js";
import { type TxACKPacket, TxStatus } from "../protocol/messages.js";
import type { NormalisedHeader } from "../publish/validate.js";
import type { Session } from "../server/session.js";
import { GroupCommitter } from "../store/group-commit.js";
import type { PublishRecord } from "../store/messages.js";
import {
  applyTxAnswers,
  type CommittableMessage,
  recordCommitAfterRollback,
  TX_ANSWER_UNKNOWN,
  type TxAnswer,
  type TxAnswerResult,
} from "../store/transactions.js";
import type { ProducerSessions } from "./producers.js";
import type { TransactionDeps } from "./transactions.js";

const MESSAGE_ID = /^[0-9a-f]{32}$/;

/** Counters exposed as metrics. */
export interface TxAnswerCounters {
  committed: number;
  rolledBack: number;
  unknown: number;
  /** TX_ACKs for messages not pending (already decided, or never uncommitted). */
  ignored: number;
  /** TX_ACKs from a session of another group than the message's publisher (secrets configured). */
  refused: number;
  failed: number;
}

/** Applies producers' TX_ACKs (see module comment). */
export class TxAnswerApplier {
  readonly counters: TxAnswerCounters = {
    committed: 0,
    rolledBack: 0,
    unknown: 0,
    ignored: 0,
    refused: 0,
    failed: 0,
  };
  /** One group committer per shard (a message's pending transaction is in its shard). */
  private readonly committers: GroupCommitter<TxAnswer, TxAnswerResult>[];
  private stopped = false;
  /** Per-answer error lines, rate-limited (a database that is down fails every answer). */
  private readonly limitedLog: RateLimitedLog;
  /** With secrets configured, a TX_ACK decides only messages of the answering session's group. */
  private readonly ownGroupOnly: boolean;

  constructor(
    private readonly deps: TransactionDeps,
    private readonly producers: ProducerSessions,
  ) {
    this.limitedLog = new RateLimitedLog(deps.log);
    this.ownGroupOnly = deps.config.secrets.size > 0;
    const pools = deps.pools ?? [deps.pool];
    this.committers = pools.map(
      (pool, shard) =>
        new GroupCommitter<TxAnswer, TxAnswerResult>({
          maxBatch: deps.config.batch.maxMessages,
          concurrency: 1,
          write: (answers) => this.write(answers, pool, shard),
        }),
    );
  }

  /**
   * A commit for a message no longer pending: when it was rolled back (the give-up age passed
   * while the producer's local transaction still ran, or an earlier rollback), the producer
   * committed what the broker dropped. That must not pass in silence (it was a debug line): a
   * history row and a warning, with the message id. A commit repeated after one applied is
   * nothing.
   */
  private commitAfterRollback(messageId: string, detail: string, session: Session, shard: number): void {
    const pool = (this.deps.pools ?? [this.deps.pool])[shard] ?? this.deps.pool;
    recordCommitAfterRollback(pool, {
      messageId,
      now: new Date(),
      nodeId: this.deps.nodeId,
      detail: `${detail} after the message was rolled back: not delivered`,
    }).then(
      (rolledBack) => {
        if (!rolledBack) return;
        this.limitedLog.warn(
          "TX_ACK commit after rollback",
          { code: ErrorCode.TxCommitTooLate, connection: session.id, groupId: session.groupId, messageId },
          "a producer committed a message already rolled back (given up, or rolled back before): it is not delivered; the producer must send it again",
        );
      },
      (err: unknown) => {
        this.limitedLog.error(
          "TX_ACK late commit not recorded",
          { code: toKiteqError(err).code, connection: session.id, messageId, err: String(err) },
          "a commit for a message no longer pending could not be checked against the history",
        );
      },
    );
  }

  /** A producer's TX_ACK. Never answered. */
  onTxAck(session: Session, opaque: number, tx: TxACKPacket): void {
    const messageId = tx.header.messageId.toLowerCase();
    const log = session.log.child({ messageId, status: tx.status });
    if (this.stopped) {
      log.debug("TX_ACK while stopping, not applied: the message stays pending and is checked again");
      return;
    }
    if (!MESSAGE_ID.test(messageId)) {
      this.limitedLog.warn(
        "TX_ACK invalid messageId",
        { code: ErrorCode.MessageInvalid, connection: session.id, peer: session.peer },
        "TX_ACK with an invalid messageId, ignored",
      );
      return;
    }
    session.answersTxChecks = true;
    const sent = this.producers.takeCheck(session, opaque, messageId);
    const by = `producer ${session.groupId ?? "?"} (${session.peer}, ${sent ? `answer to check ${sent.check}` : "own TX_ACK"})`;
    let answer: TxAnswer;
    switch (tx.status) {
      case TxStatus.COMMIT:
        answer = { messageId, kind: "committed", detail: `commit by ${by}`, check: sent?.check ?? null };
        break;
      case TxStatus.ROLLBACK:
        answer = { messageId, kind: "rolled_back", detail: `rollback by ${by}`, check: sent?.check ?? null };
        break;
      case TxStatus.UNKNOWN:
        if (sent === undefined) {
          log.debug("TX_ACK unknown that answers no check: nothing to do");
          return;
        }
        answer = { messageId, kind: "tx_checked", detail: TX_ANSWER_UNKNOWN, check: sent.check };
        break;
      default:
        this.limitedLog.warn(
          "TX_ACK unknown status",
          { code: ErrorCode.BodyInvalid, connection: session.id, messageId, status: tx.status },
          "TX_ACK with an unknown status, ignored",
        );
        return;
    }
    if (this.ownGroupOnly) answer.fromGroup = session.groupId ?? "";
    const shard = this.committers.length === 1 ? 0 : (this.deps.shardOf?.(messageId) ?? 0);
    this.committers[shard]!.submit(answer).then(
      (r) => {
        if (r.wrongGroup) {
          this.counters.refused++;
          this.limitedLog.warn(
            "TX_ACK of another group",
            { code: ErrorCode.Forbidden, connection: session.id, groupId: session.groupId, messageId },
            "TX_ACK for a message another group published, not applied: only the publishing group decides",
          );
          return;
        }
        if (!r.applied) {
          this.counters.ignored++;
          if (answer.kind === "committed") {
            this.commitAfterRollback(messageId, answer.detail, session, shard);
            return;
          }
          log.debug("TX_ACK for a message not pending (already committed or rolled back?): nothing changed");
          return;
        }
        if (answer.kind === "committed") this.counters.committed++;
        else if (answer.kind === "rolled_back") this.counters.rolledBack++;
        else this.counters.unknown++;
        log.debug({ outcome: answer.kind, deliveries: r.deliveries.length }, "TX_ACK applied");
      },
      (err: unknown) => {
        this.counters.failed++;
        const e = toKiteqError(err, { connection: session.id, messageId });
        this.limitedLog.error(
          `TX_ACK not applied ${e.code}`,
          { code: e.code, connection: session.id, messageId, err: e.message },
          "TX_ACK not applied; the checker will ask again",
        );
      },
    );
  }

  /** Take no more TX_ACKs; wait until every one received is applied (or failed). */
  drain(): Promise<void> {
    this.stopped = true;
    return Promise.all(this.committers.map((c) => c.drain()))
      .then(() => undefined)
      .finally(() => this.limitedLog.close());
  }

  private async write(answers: TxAnswer[], pool: pg.Pool, shard: number): Promise<TxAnswerResult[]> {
    const now = new Date();
    const { config, nodeId, claimer, dispatcher } = this.deps;
    const results = await applyTxAnswers(pool, answers, {
      now,
      nodeId,
      leaseUntil: new Date(now.getTime() + config.leaseSeconds * 1000),
      plan: (m) => dispatcher.planDeliveries(normalisedHeader(m)),
    });
    const stored: { record: PublishRecord; pk: number }[] = [];
    for (const r of results) {
      if (r.message === undefined || !r.deliveries.some((d) => d.claimedBy === claimer)) continue;
      stored.push({ record: publishRecord(r.message, r.deliveries), pk: r.message.messagePk });
    }
    if (stored.length > 0) dispatcher.afterCommit(stored, shard);
    return results;
  }
}

/** The header the Dispatcher plans with, from the stored message. */
export function normalisedHeader(m: CommittableMessage): NormalisedHeader {
  return {
    messageId: m.messageId,
    topic: m.topic,
    messageType: m.messageType,
    groupId: m.groupId,
    commit: true,
    fly: false,
    expiresAt: m.expiresAt,
    deliverLimit: m.deliverLimit,
    createdAt: m.createdAt,
    properties: m.properties,
    snappy: m.snappy,
    // Uncommitted messages cannot carry kiteq.deliverAt (refused at publish): due at the commit.
    deliverAt: null,
  };
}

function publishRecord(
  m: CommittableMessage,
  deliveries: { groupId: string; claimedBy: string | null }[],
): PublishRecord {
  return {
    messageId: m.messageId,
    topic: m.topic,
    messageType: m.messageType,
    groupId: m.groupId,
    commit: true,
    expiresAt: m.expiresAt,
    deliverLimit: m.deliverLimit,
    createdAt: m.createdAt,
    properties: m.properties,
    snappy: m.snappy,
    bodyIsString: m.bodyIsString,
    body: m.body,
    deliveries,
  };
}
