/**
 * Writes the outcome of pushes (acks, nacks, releases) in batches, one transaction per batch,
 * and retries a failed batch: an outcome is never dropped because the database blinked. After
 * the last retry (only once the node stops) the claim is left to lapse, and the delivery is made
 * again by whichever node claims it next (at least once, never lost).
 */
import type pg from "pg";
import { ErrorCode, isDataError, toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { RateLimitedLog } from "../log-limit.js";
import {
  type AckRecord,
  ackAfterEnd,
  ackDeliveries,
  deliveryKey,
  type NackRecord,
  nackDeliveries,
  releaseDeliveries,
} from "../store/deliveries.js";
import { GroupCommitter } from "../store/group-commit.js";

/** Attempts of a stopping node before an outcome is given up (about 18 s). */
const RETRIES = 8;
const RETRY_DELAY_MS = 500;
export const MAX_RETRY_DELAY_MS = 5_000;
/** How long the ack writer collects acks before a statement (see the constructor), ms. */
export const ACK_WINDOW_MS = 3;
/** Most acks in one ack statement. */
export const ACK_MAX_BATCH = 2000;

type Release = { messagePk: number; groupId: string; claimEpoch: number };

/**
 * The result of an item its batch did not decide (a later round of the batch failed after earlier
 * ones had committed): the item alone is retried, as if its batch had failed.
 */
class NotWritten {
  constructor(readonly error: unknown) {}
}

/** Batched writer of push outcomes. */
export class OutcomeWriter {
  /** Per ack: whether it ended a delivery (known for late acks; true for the others). */
  private readonly acks: GroupCommitter<AckRecord, boolean | NotWritten>;
  private readonly nacks: GroupCommitter<NackRecord, boolean>;
  private readonly releases: GroupCommitter<Release, void>;
  /** Acks of deliveries that had ended, whose own statement failed after their batch was written. */
  private readonly afterEnd: GroupCommitter<AckRecord, void>;
  private retrying = 0;
  /** Errors of failed batches already logged (each item of a batch hears the same one). */
  private readonly reported = new WeakSet<object>();
  /** Set by drain() (the node stops): retries are then bounded. */
  private closing = false;
  /** One line per outcome would be thousands a second while PostgreSQL is away. */
  private readonly limitedLog: RateLimitedLog;

  constructor(
    pool: pg.Pool,
    nodeId: string,
    log: Logger,
    /** First retry delay (ms; each next one longer, at most 5 s). Tests shorten it. */
    private readonly retryDelayMs = RETRY_DELAY_MS,
  ) {
    this.limitedLog = new RateLimitedLog(log);
    const each =
      <T>(write: (items: T[]) => Promise<unknown>) =>
      async (items: T[]) => {
        await write(items);
        return items.map((): void => undefined);
      };
    // Nobody waits on an ack's write (the consumer is already answered): collect for a few ms,
    // so a busy node writes hundreds of acks per transaction instead of one. Not longer: at
    // 20,000 acks/s a 20 ms window made statements that held a core for ~10 ms each, and the
    // publishes queued behind them (e2e p99 at 4 groups x 5,000/s: 37-55 ms with 20 ms, 20-30
    // ms with 2-5 ms; flat-out throughput the same).
    this.acks = new GroupCommitter({
      maxBatch: ACK_MAX_BATCH,
      concurrency: 1,
      windowMs: ACK_WINDOW_MS,
      write: async (items: AckRecord[]) => {
        const { lateEnded, afterEnd, recordedAfterEnd, unsettled, unsettledError } = await ackDeliveries(
          pool,
          items,
          nodeId,
        );
        // Retried on their own, as every outcome is (the statement judges again: a repeat of
        // one that did commit writes nothing).
        for (const a of afterEnd ?? []) this.submit(this.afterEnd, a, () => {}, "ack after end", 0);
        // True when the history has the ack: it ended the delivery, or was recorded after its end.
        const results: (boolean | NotWritten)[] = items.map(
          (a) =>
            a.pushedAt !== null ||
            lateEnded.has(deliveryKey(a)) ||
            recordedAfterEnd?.has(deliveryKey(a)) === true,
        );
        if (unsettled !== undefined) {
          const retry = new NotWritten(unsettledError);
          const notWritten = new Set(unsettled);
          for (let i = 0; i < items.length; i++) if (notWritten.has(items[i]!)) results[i] = retry;
        }
        return results;
      },
    });
    this.nacks = new GroupCommitter({
      maxBatch: 1000,
      concurrency: 1,
      windowMs: 20,
      write: async (items: NackRecord[]) => {
        const { deadLettered } = await nackDeliveries(pool, items, nodeId);
        return items.map((n) => deadLettered.has(deliveryKey(n)));
      },
    });
    this.afterEnd = new GroupCommitter({
      maxBatch: 2000,
      concurrency: 1,
      write: each((items: AckRecord[]) => ackAfterEnd(pool, items, nodeId)),
    });
    this.releases = new GroupCommitter({
      maxBatch: 2000,
      concurrency: 1,
      write: each((items: Release[]) => releaseDeliveries(pool, items)),
    });
  }

  /**
   * Record an ack; `done` runs once it is written (or given up), with whether the history has it:
   * it ended a delivery, or (a late ack of a delivery dead-lettered or expired meanwhile) it was
   * recorded after that end; a late ack of a delivery acked already has neither.
   */
  ack(record: AckRecord, done: (ended: boolean) => void): void {
    // A NotWritten result never reaches done (submit retries the item).
    this.submit<AckRecord, boolean | NotWritten>(
      this.acks,
      record,
      done as (r: boolean | NotWritten) => void,
      "ack",
      0,
    );
  }

  /**
   * Record a nack; `done` runs once it is written (or given up), with whether it dead-lettered
   * its delivery (false for a nack at the deliver limit of a delivery an ack had ended first).
   */
  nack(record: NackRecord, done: (deadLettered: boolean) => void): void {
    this.submit<NackRecord, boolean>(this.nacks, record, done, "nack", 0);
  }

  /** Release a claim without spending an attempt; `done` runs once written (or given up). */
  release(item: Release, done: () => void): void {
    this.submit(this.releases, item, done, "release", 0);
  }

  /** Outcomes submitted and not written yet (queued, being written, or waiting to retry). */
  get unwritten(): number {
    return (
      this.acks.pending + this.nacks.pending + this.releases.pending + this.afterEnd.pending + this.retrying
    );
  }

  /** Wait until everything submitted is written or given up (the node stops: see submit). */
  async drain(): Promise<void> {
    this.closing = true;
    for (;;) {
      await Promise.all([
        this.acks.drain(),
        this.nacks.drain(),
        this.releases.drain(),
        this.afterEnd.drain(),
      ]);
      if (
        this.retrying === 0 &&
        this.acks.pending + this.nacks.pending + this.releases.pending + this.afterEnd.pending === 0
      ) {
        this.limitedLog.close();
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private submit<T extends { messagePk: number; groupId: string }, R>(
    committer: GroupCommitter<T, R>,
    item: T,
    done: (result: R | false) => void,
    what: string,
    attempt: number,
  ): void {
    committer.enqueue(item, (failure: unknown, result?: R) => {
      if (failure === undefined && !(result instanceof NotWritten)) {
        done(result as R);
        return;
      }
      const err = failure ?? (result as NotWritten).error;
      const e = toKiteqError(
        err,
        { messagePk: item.messagePk, groupId: item.groupId },
        ErrorCode.StoreFailed,
      );
      // While the node runs, an outcome is retried until written: given up, the push it records
      // would be missing from the history once its lease lapsed and another node delivered again.
      // Only a stopping node gives up, after RETRIES, so that its stop stays bounded; and so does
      // a write the database refuses for its data (it would fail for ever, and the delivery, held
      // and its lease renewed, was never made again: an invalid date in a walkthrough).
      const refused = isDataError(err);
      if ((this.closing || refused) && attempt >= RETRIES) {
        this.limitedLog.error(
          `gave up ${what}`,
          { code: e.code, err: e.message, what, messagePk: item.messagePk, groupId: item.groupId },
          refused
            ? "giving up writing a delivery outcome the database refuses; its lease will lapse and the delivery be made again"
            : "giving up writing a delivery outcome at stop; its lease will lapse",
        );
        done(false);
        return;
      }
      // Once per failed batch (its items share the error): per item, one failed batch of 1,000
      // read as 5 lines and "995 more".
      if (attempt === 0 && (typeof err !== "object" || err === null || !this.reported.has(err))) {
        if (typeof err === "object" && err !== null) this.reported.add(err);
        this.limitedLog.warn(
          `${what} retry ${e.code}`,
          { code: e.code, err: e.message, what },
          "a batch of delivery outcomes failed to write, retrying",
        );
      }
      this.retrying++;
      setTimeout(
        () => {
          this.retrying--;
          this.submit(committer, item, done, what, attempt + 1);
        },
        Math.min(this.retryDelayMs * (attempt + 1), MAX_RETRY_DELAY_MS),
      );
    });
  }
}
