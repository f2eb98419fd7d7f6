/**
 * Whether this node can store publishes now, as its publish batches show it: /healthz answers 503
 * and the log says so when a batch has waited for PostgreSQL too long (a lock held by another
 * session, a stalled server: `SELECT 1` still answers then) or when the last batches failed (a
 * full disk: PostgreSQL answers, every insert fails). Pure: time is a parameter.
 */

/** A batch waiting this long makes the store "stalled" (producers' sends start to time out). */
export const PUBLISH_STALL_MS = 5_000;
/** A failure is the node's state until a batch succeeds, for at most this long. */
const FAILURE_MEMORY_MS = 30_000;

/** Publish batches in flight and the last outcome (see module comment). */
export class PublishHealth {
  private readonly started = new Map<number, number>();
  private nextId = 0;
  private lastFailure: { at: number; reason: string } | undefined;

  constructor(private readonly stallMs = PUBLISH_STALL_MS) {}

  /** A batch goes to PostgreSQL at `now`; returns its id for finished(). */
  begin(now: number): number {
    const id = this.nextId++;
    this.started.set(id, now);
    return id;
  }

  /** The batch `id` committed (no `failure`) or failed. */
  finished(id: number, now: number, failure?: string): void {
    this.started.delete(id);
    this.lastFailure = failure === undefined ? undefined : { at: now, reason: failure };
  }

  /** Why publishes cannot be stored at `now`, or undefined when they can. */
  problem(now: number): string | undefined {
    let oldest = Number.POSITIVE_INFINITY;
    for (const t of this.started.values()) oldest = Math.min(oldest, t);
    if (now - oldest >= this.stallMs) {
      return `a publish batch has waited ${((now - oldest) / 1000).toFixed(1)} s for PostgreSQL (a lock held by another session, or a stalled server)`;
    }
    const f = this.lastFailure;
    if (f !== undefined && now - f.at < FAILURE_MEMORY_MS)
      return `the last publish batch failed: ${f.reason}`;
    return undefined;
  }
}
