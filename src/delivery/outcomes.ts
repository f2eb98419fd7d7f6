/**
 * Writes the outcome of pushes (acks, nacks, releases) in batches, one transaction per batch,
 * and retries a failed batch: an outcome is never dropped because the database blinked. After
 * the last retry the claim is left to lapse, and the delivery is made again by whichever node
 * claims it next (at least once, never lost).
 */
import type pg from "pg";
import { toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import {
  type AckRecord,
  ackDeliveries,
  ackKey,
  type NackRecord,
  nackDeliveries,
  releaseDeliveries,
} from "../store/deliveries.js";
import { GroupCommitter } from "../store/group-commit.js";

const RETRIES = 8;
const RETRY_DELAY_MS = 500;

type Release = { messagePk: number; groupId: string; claimEpoch: number };

/** Batched writer of push outcomes. */
export class OutcomeWriter {
  /** Per ack: whether it ended a delivery (known for late acks; true for the others). */
  private readonly acks: GroupCommitter<AckRecord, boolean>;
  private readonly nacks: GroupCommitter<NackRecord, void>;
  private readonly releases: GroupCommitter<Release, void>;
  private retrying = 0;

  constructor(
    pool: pg.Pool,
    nodeId: string,
    private readonly log: Logger,
  ) {
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
      maxBatch: 2000,
      concurrency: 1,
      windowMs: 3,
      write: async (items: AckRecord[]) => {
        const { lateEnded } = await ackDeliveries(pool, items, nodeId);
        return items.map((a) => a.pushedAt !== null || lateEnded.has(ackKey(a)));
      },
    });
    this.nacks = new GroupCommitter({
      maxBatch: 1000,
      concurrency: 1,
      windowMs: 20,
      write: each((items: NackRecord[]) => nackDeliveries(pool, items, nodeId)),
    });
    this.releases = new GroupCommitter({
      maxBatch: 2000,
      concurrency: 1,
      write: each((items: Release[]) => releaseDeliveries(pool, items)),
    });
  }

  /**
   * Record an ack; `done` runs once it is written (or given up), with whether it ended a
   * delivery (a late ack of a delivery that ended meanwhile, dead-lettered say, ended none).
   */
  ack(record: AckRecord, done: (ended: boolean) => void): void {
    this.submit<AckRecord, boolean>(this.acks, record, done, "ack", 0);
  }

  /** Record a nack; `done` runs once it is written (or given up). */
  nack(record: NackRecord, done: () => void): void {
    this.submit(this.nacks, record, done, "nack", 0);
  }

  /** Release a claim without spending an attempt; `done` runs once written (or given up). */
  release(item: Release, done: () => void): void {
    this.submit(this.releases, item, done, "release", 0);
  }

  /** Wait until everything submitted is written or given up. */
  async drain(): Promise<void> {
    for (;;) {
      await Promise.all([this.acks.drain(), this.nacks.drain(), this.releases.drain()]);
      if (this.retrying === 0 && this.acks.pending + this.nacks.pending + this.releases.pending === 0) return;
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
    committer.enqueue(item, (err: unknown, result?: R) => {
      if (err === undefined) {
        done(result as R);
        return;
      }
      const e = toKiteqError(err, { messagePk: item.messagePk, groupId: item.groupId });
      if (attempt >= RETRIES) {
        this.log.error(
          { code: e.code, err: e.message, what },
          "giving up writing a delivery outcome; its lease will lapse",
        );
        done(false);
        return;
      }
      if (attempt === 0)
        this.log.warn({ code: e.code, err: e.message, what }, "delivery outcome write failed, retrying");
      this.retrying++;
      setTimeout(
        () => {
          this.retrying--;
          this.submit(committer, item, done, what, attempt + 1);
        },
        RETRY_DELAY_MS * (attempt + 1),
      );
    });
  }
}
