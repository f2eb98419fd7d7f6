/**
 * The TxChecker: asks producers about messages still uncommitted. On a poll, on a timer at the
 * next due time, and when a producer group connects here, it
 * 1. rolls back what is older than txCheck.giveUpSeconds (any node may: no producer is needed);
 * 2. claims due checks (FOR UPDATE SKIP LOCKED, leased, fenced by epoch) only for groups with a
 *    connection on this node, so a node without the producer leaves them to one that has it;
 * 3. sends each a TX_ACK (status 0, "Server Check", the stored header, a fresh opaque) on one
 *    connection of the publishing group, records `tx_checked`, schedules the next check with
 *    backoff and releases the claim. The answer arrives as a TX_ACK (TxAnswerApplier).
 */
import { txCheckDelaySeconds } from "../config/schedule.js";
import { ErrorCode, toKiteqError } from "../errors.js";
import { RateLimitedLog } from "../log-limit.js";
import { CommandType } from "../protocol/commands.js";
import { encodeTxACKPacket, type Header, TxStatus } from "../protocol/messages.js";
import {
  type ClaimedTxCheck,
  claimDueTxChecks,
  giveUpTransactions,
  nextTxCheckTime,
  recordTxChecks,
  releaseTxClaimsOf,
  type TxCheckRecord,
} from "../store/transactions.js";
import type { ProducerSessions } from "./producers.js";
import type { TransactionDeps } from "./transactions.js";

const BATCH = 500;
/** Least delay of the wake-up timer (a row whose time passed but cannot be taken yet). */
const MIN_WAKE_MS = 50;
/** Longest single timer (Node's limit is ~24.8 days). */
const MAX_WAKE_MS = 3_600_000;

/** Counters exposed as metrics. */
export interface TxCheckCounters {
  checksSent: number;
  gaveUp: number;
  /** Rolled back at a check found past its expiry. */
  expired: number;
}

/** Periodic checker of uncommitted messages (see module comment). */
export class TxChecker {
  readonly counters: TxCheckCounters = { checksSent: 0, gaveUp: 0, expired: 0 };
  private poll: NodeJS.Timeout | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Number.POSITIVE_INFINITY;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;

  /** The pass fails every second while the database is down: a few lines, then summaries. */
  private readonly failLog: RateLimitedLog;

  constructor(
    private readonly deps: TransactionDeps,
    private readonly producers: ProducerSessions,
  ) {
    this.failLog = new RateLimitedLog(deps.log, { first: 3, intervalMs: 60_000 });
  }

  /** Release this node's earlier runs' claims, then check now and on every poll. */
  async start(): Promise<void> {
    const { pool, nodeId, claimer, config, log } = this.deps;
    const released = await releaseTxClaimsOf(pool, `${nodeId}/`, claimer);
    if (released > 0) log.info({ released }, "released check claims of an earlier run of this node");
    this.stopped = false;
    const pollMs = Math.min(config.recoverSeconds, config.txCheck.firstCheckSeconds) * 1000;
    this.poll = setInterval(() => this.wake(), pollMs);
    this.poll.unref();
    this.wake();
  }

  /** Run a pass soon (coalesced: one pass at a time, one more if asked meanwhile). */
  wake(): void {
    if (this.stopped) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Stop the timers and wait for the pass in progress (its claims are released by it). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.poll);
    clearTimeout(this.wakeTimer);
    await this.running;
    this.failLog.close();
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.pass();
      } while (this.again && !this.stopped);
    } catch (err) {
      const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
      this.failLog.error(
        `check pass failed ${e.code}`,
        { code: e.code, err: e.message },
        "transaction check pass failed, retrying",
      );
      this.scheduleWake(Date.now() + 1000);
    }
  }

  private async pass(): Promise<void> {
    const { pool, nodeId, claimer, config, log } = this.deps;
    const giveUpMs = config.txCheck.giveUpSeconds * 1000;
    // Batch after batch until a short one, or a stop: a node started after a long outage finds
    // every pending message past the age, and SIGTERM waited for all of them (145,600: 2.3 s).
    let gaveUp = 0;
    for (;;) {
      if (this.stopped) break;
      const now = Date.now();
      const n = await giveUpTransactions(pool, {
        storedBefore: new Date(now - giveUpMs),
        now: new Date(now),
        nodeId,
        detail: `gave up after ${config.txCheck.giveUpSeconds} s without a commit or rollback`,
        limit: BATCH,
      });
      this.counters.gaveUp += n;
      gaveUp += n;
      if (n < BATCH) break;
    }
    // One line a pass, not one a batch (292 lines for one sweep of 145,600).
    if (gaveUp > 0) log.info({ rolledBack: gaveUp }, "gave up uncommitted messages: rolled back");
    this.producers.pruneChecks(Date.now() - Math.max(60, config.txCheck.maxIntervalSeconds * 2) * 1000);
    // Only as many checks as the group's connections here have room for (ProducerSessions): a
    // group whose producers have a full window is checked again when they answer (onRoom).
    let groups = this.withRoom(this.producers.groups());
    const expiredBefore = this.counters.expired;
    for (;;) {
      if (groups.length === 0 || this.stopped) break;
      const now = Date.now();
      const limits = groups.map((g) => Math.min(BATCH, this.producers.room(g)));
      const claimed = await claimDueTxChecks(pool, {
        groups,
        limits,
        now: new Date(now),
        claimer,
        leaseUntil: new Date(now + config.leaseSeconds * 1000),
        giveUpBefore: new Date(now - giveUpMs),
        limit: BATCH,
      });
      if (claimed.length === 0) break;
      const records = claimed.map((c) => this.send(c, now));
      await recordTxChecks(pool, records, { now: new Date(now), nodeId });
      if (
        claimed.length <
        Math.min(
          BATCH,
          limits.reduce((a, b) => a + b, 0),
        )
      )
        break;
      groups = this.withRoom(groups);
    }
    const expired = this.counters.expired - expiredBefore;
    if (expired > 0) log.info({ rolledBack: expired }, "uncommitted messages past their expiry: rolled back");
    // A group without room is not waited for here (its due checks would wake this every 50 ms).
    const next = await nextTxCheckTime(
      pool,
      this.withRoom(this.producers.groups()),
      config.txCheck.giveUpSeconds,
    );
    if (next !== null) this.scheduleWake(next.getTime());
  }

  /** The groups among `groups` whose connections here can take a check now. */
  private withRoom(groups: string[]): string[] {
    return groups.filter((g) => this.producers.room(g) > 0);
  }

  /**
   * Send one check on a connection of the message's group (if one is still open). A message past
   * its expiry is not checked but ended: a commit now would deliver nothing (its deliveries would
   * expire at once), and it was checked again and again until the give-up age.
   */
  private send(c: ClaimedTxCheck, now: number): TxCheckRecord {
    const check = c.checks + 1;
    const base = { messagePk: c.messagePk, claimEpoch: c.claimEpoch, check };
    if (c.expiresAt.getTime() <= now) {
      this.counters.expired++;
      const sent = `${c.checks} ${c.checks === 1 ? "check" : "checks"} sent`;
      return {
        ...base,
        sent: false,
        expired: true,
        nextCheckAt: new Date(now),
        detail: `expired uncommitted at ${c.expiresAt.toISOString()}: no commit or rollback came before (${sent})`,
      };
    }
    const session = this.producers.pick(c.groupId);
    if (session === undefined) {
      return { ...base, sent: false, nextCheckAt: new Date(now), detail: "" };
    }
    const opaque = session.allocateOpaque();
    session.send(
      CommandType.TX_ACK,
      opaque,
      encodeTxACKPacket({ header: wireHeader(c), status: TxStatus.UNKNOWN, feedback: "Server Check" }),
    );
    this.producers.trackCheck(session, opaque, { messageId: c.messageId, check, sentAtMs: now });
    this.counters.checksSent++;
    session.log.debug({ messageId: c.messageId, check, opaque }, "transaction check sent");
    const delayMs = txCheckDelaySeconds(this.deps.config.txCheck, check + 1) * 1000;
    return {
      ...base,
      sent: true,
      nextCheckAt: new Date(now + delayMs),
      detail: `check ${check} sent to producer ${c.groupId} (${session.peer}) on node ${this.deps.nodeId}`,
    };
  }

  /** Wake at `at` (earliest wins). */
  private scheduleWake(at: number): void {
    if (this.stopped) return;
    const when = Math.max(at, Date.now() + MIN_WAKE_MS);
    if (when >= this.wakeAt) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = when;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeAt = Number.POSITIVE_INFINITY;
        this.wake();
      },
      Math.min(when - Date.now(), MAX_WAKE_MS),
    );
    this.wakeTimer.unref();
  }
}

/** The check's header: the message as stored, still uncommitted. */
function wireHeader(c: ClaimedTxCheck): Header {
  return {
    messageId: c.messageId,
    topic: c.topic,
    messageType: c.messageType,
    expiredTime: Math.floor(c.expiresAt.getTime() / 1000),
    deliverLimit: c.deliverLimit,
    groupId: c.groupId,
    commit: false,
    fly: false,
    properties: c.properties,
    createTime: Math.floor(c.createdAt.getTime() / 1000),
    snappy: c.snappy,
  };
}
