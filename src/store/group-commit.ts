/**
 * Group commit: callers submit one item each and get their own result, while the items are
 * written in batches, one transaction per batch.
 *
 * Policy: a batch starts as soon as a writer slot is free (on the next turn of the event loop,
 * so everything that arrived in the same I/O round joins it); while all slots are busy, items
 * accumulate, so batches grow with load and a lone item is never held back by a timer. With
 * `parallelFrom`, a batch beside one already in flight starts only once that many items wait.
 */

/** Options of a GroupCommitter. */
export interface GroupCommitOptions<T, R> {
  /** Largest batch written in one transaction. */
  maxBatch: number;
  /** Batches written at once (each on its own connection). */
  concurrency: number;
  /**
   * Items that must be waiting before a batch starts beside one in flight (default 1: whenever a
   * slot is free). Below it, one batch at a time: fewer, larger transactions, and no commit
   * queued behind the other writer's WAL flush, which is what a few producers each awaiting
   * their publish want; a deep queue still gets every slot.
   */
  parallelFrom?: number;
  /**
   * How long a batch that is not full waits for more items before it is written (ms; default 0:
   * as soon as a slot is free). For writes nobody waits on (acks), a few ms turn many small
   * transactions into few large ones.
   */
  windowMs?: number;
  /** Write one batch; return one result per item, in order. A throw fails every item. */
  write(items: T[]): Promise<R[]>;
}

/** Told the outcome of one item: an error, or undefined and the item's result. */
export type ItemCallback<R> = (err: unknown, result?: R) => void;

interface Pending<T, R> {
  item: T;
  done: ItemCallback<R>;
}

/** Batches submitted items into transactions (see module comment). */
export class GroupCommitter<T, R> {
  private queue: Pending<T, R>[] = [];
  private inFlight = 0;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];
  /** Batches written and items in them, for metrics. */
  readonly stats = { batches: 0, items: 0, failures: 0 };

  constructor(private readonly options: GroupCommitOptions<T, R>) {}

  /** Queue one item; resolves with its result once its batch committed. */
  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.enqueue(item, (err, result) => (err === undefined ? resolve(result as R) : reject(err)));
    });
  }

  /**
   * Queue one item; `done` is called once its batch committed or failed. For writes at tens of
   * thousands per second (acks), a callback instead of two promises per item.
   */
  enqueue(item: T, done: ItemCallback<R>): void {
    this.queue.push({ item, done });
    this.schedule();
  }

  /** Items waiting or being written. */
  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  /** Resolves when every submitted item has been written (or failed). */
  async drain(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Whether another batch may start now (a free slot, and enough waiting to run beside another). */
  private mayStart(): boolean {
    if (this.inFlight >= this.options.concurrency || this.queue.length === 0) return false;
    return this.inFlight === 0 || this.queue.length >= (this.options.parallelFrom ?? 1);
  }

  private schedule(): void {
    if (this.scheduled || !this.mayStart()) return;
    this.scheduled = true;
    const run = () => {
      this.scheduled = false;
      while (this.mayStart()) this.startBatch();
    };
    const windowMs = this.options.windowMs ?? 0;
    if (windowMs > 0 && this.queue.length < this.options.maxBatch) setTimeout(run, windowMs);
    else setImmediate(run);
  }

  private startBatch(): void {
    const batch = this.queue.splice(0, this.options.maxBatch);
    this.inFlight++;
    this.stats.batches++;
    this.stats.items += batch.length;
    this.options
      .write(batch.map((p) => p.item))
      .then(
        (results) => {
          settle(batch, (p, i) => p.done(undefined, results[i]!));
        },
        (err: unknown) => {
          this.stats.failures++;
          // A write that rejects without a reason still fails its items.
          const reason = err ?? new Error("batch write failed");
          settle(batch, (p) => p.done(reason));
        },
      )
      .finally(() => {
        this.inFlight--;
        this.schedule();
        if (this.inFlight === 0 && this.queue.length === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
      });
  }
}

/** Tell every item of a batch; one callback that throws does not keep the others from hearing. */
function settle<P>(batch: readonly P[], tell: (p: P, i: number) => void): void {
  let thrown: { err: unknown } | undefined;
  for (let i = 0; i < batch.length; i++) {
    try {
      tell(batch[i]!, i);
    } catch (err) {
      thrown ??= { err };
    }
  }
  if (thrown !== undefined) throw thrown.err;
}
