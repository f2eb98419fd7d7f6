/**
 * Mirror of ZooKeeper's bindings (`/kiteq/sub`) into the bindings table (source "zk"), which is
 * what the delivery engine of every node reads (each table change NOTIFYs every node).
 *
 * Writes run one at a time, in the order the registry reported them: a full resync reads
 * ZooKeeper when its turn comes, and a watch event carries the state of its read, so the last
 * write of a group is always the newest state ZooKeeper reported. A write that keeps failing
 * (PostgreSQL down) is given up after a few attempts and replaced by a full resync, retried
 * until it succeeds or the mirror stops.
 */
import type pg from "pg";
import type { Binding } from "../binding/binding.js";
import { toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { replaceGroupTopicBindings, replaceSourceBindings } from "../store/bindings.js";

/** Attempts of one write before it is given up (and a resync scheduled). */
const ATTEMPTS = 3;
const RETRY_MS = 200;
/** Delay of the resync that replaces a failed write (and between failed resyncs). */
const RESYNC_RETRY_MS = 5_000;

/** Options of a {@link BindingMirror}. */
export interface BindingMirrorOptions {
  pool: pg.Pool;
  log: Logger;
  /** Every binding currently in ZooKeeper (throws while ZooKeeper is unreachable). */
  listAll(): Promise<Binding[]>;
  /** True while ZooKeeper can be read; a failed resync is retried only then (else on reconnect). */
  canRead(): boolean;
  /** Time source of `updated_at` (tests). */
  now?: () => Date;
}

/** Serial writer of ZooKeeper bindings into the bindings table (see module comment). */
export class BindingMirror {
  private tail: Promise<void> = Promise.resolve();
  private resyncTimer: NodeJS.Timeout | undefined;
  private pendingResync: Promise<boolean> | undefined;
  private stopped = false;
  private readonly now: () => Date;
  private written = 0;

  constructor(private readonly o: BindingMirrorOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /** The bindings of (groupId, topic) are now `bindings` (empty: the group is unbound). */
  groupChanged(topic: string, groupId: string, bindings: readonly Binding[]): void {
    void this.enqueue(`bindings of ${groupId} on ${topic}`, () =>
      replaceGroupTopicBindings(this.o.pool, { groupId, topic, source: "zk", bindings, now: this.now() }),
    ).then((ok) => {
      if (!ok) this.scheduleResync();
    });
  }

  /**
   * Replace every "zk" binding with what ZooKeeper holds now. Resolves true once written,
   * false when it failed (a retry is then scheduled while ZooKeeper is readable).
   */
  resync(): Promise<boolean> {
    // One not yet started is enough: it reads ZooKeeper when it runs.
    if (this.pendingResync !== undefined) return this.pendingResync;
    clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    const pending: Promise<boolean> = this.enqueue("bindings resync", async () => {
      if (this.pendingResync === pending) this.pendingResync = undefined;
      const all = await this.o.listAll();
      await replaceSourceBindings(this.o.pool, "zk", all, this.now());
      this.o.log.info({ bindings: all.length }, "bindings mirrored from ZooKeeper");
    }).then((ok) => {
      if (this.pendingResync === pending) this.pendingResync = undefined;
      if (!ok) this.scheduleResync();
      return ok;
    });
    this.pendingResync = pending;
    return pending;
  }

  /** Writes ended so far (written or given up): a caller can tell whether any ended since it looked. */
  get writesEnded(): number {
    return this.written;
  }

  /** Resolves once every write queued so far is done (written, or given up). */
  idle(): Promise<void> {
    return this.tail;
  }

  async stop(timeoutMs = 5_000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.resyncTimer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.tail,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  private scheduleResync(): void {
    if (this.stopped || this.resyncTimer !== undefined) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      // While ZooKeeper is unreachable the reconnect (outage over) resyncs instead.
      if (!this.stopped && this.o.canRead()) void this.resync();
    }, RESYNC_RETRY_MS);
    this.resyncTimer.unref();
  }

  /** Run `write` after the writes before it; resolves true on success. Never rejects. */
  private enqueue(what: string, write: () => Promise<void>): Promise<boolean> {
    const run = this.tail.then(async () => {
      for (let attempt = 1; ; attempt++) {
        if (this.stopped) return false;
        try {
          await write();
          return true;
        } catch (err) {
          const e = toKiteqError(err);
          if (attempt >= ATTEMPTS) {
            this.o.log.error(
              { code: e.code, err: e.message, attempts: attempt },
              `mirroring ${what} into the bindings table failed; a full resync will follow`,
            );
            return false;
          }
          this.o.log.warn({ code: e.code, err: e.message, attempt }, `mirroring ${what} failed; retrying`);
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS * attempt));
        }
      }
    });
    this.tail = run.then(() => {
      this.written++;
    });
    return run;
  }
}
