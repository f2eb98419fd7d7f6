/**
 * Bookkeeping of the compare suite: which message of which phase each handler call was, so the
 * bench can tell lost, duplicated and stray deliveries apart in every phase, and the phase figures
 * (window counts, latency from the send time carried in the message).
 */
import { type LatencySummary, Samples } from "../stats.js";

/** One phase: messages with sequence numbers [first, first + sent). */
export class PhaseTracker {
  /** Handler calls per message, saturating at 255. */
  private counts = new Uint8Array(4096);
  unique = 0;
  duplicates = 0;
  firstSeenAt = Number.NaN;
  lastSeenAt = Number.NaN;
  /** Handler calls seen within [window.from, window.to]. */
  inWindow = 0;
  readonly latency = new Samples();
  window = { from: Number.NEGATIVE_INFINITY, to: Number.POSITIVE_INFINITY };
  /** Latency is sampled for messages sent within this range. */
  latencyFor = { from: Number.POSITIVE_INFINITY, to: Number.POSITIVE_INFINITY };
  /** Sends started in this phase (its sequence range), fixed by close(). */
  started = 0;
  closed = false;

  constructor(
    readonly name: string,
    readonly first: number,
  ) {}

  seen(index: number, sentAt: number, seenAt: number): void {
    if (index >= this.counts.length) {
      let size = this.counts.length;
      while (size <= index) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.counts);
      this.counts = next;
    }
    const c = this.counts[index]!;
    if (c === 0) this.unique++;
    else this.duplicates++;
    if (c < 255) this.counts[index] = c + 1;
    if (Number.isNaN(this.firstSeenAt)) this.firstSeenAt = seenAt;
    this.lastSeenAt = seenAt;
    if (seenAt >= this.window.from && seenAt <= this.window.to) this.inWindow++;
    if (sentAt >= this.latencyFor.from && sentAt <= this.latencyFor.to) this.latency.add(seenAt - sentAt);
  }

  /** Messages of [0, started) never seen. */
  missing(): number {
    let n = 0;
    for (let i = 0; i < this.started; i++) if ((this.counts[i] ?? 0) === 0) n++;
    return n;
  }

  /** Handler calls for indexes beyond what was sent (should never happen). */
  beyond(): number {
    let n = 0;
    for (let i = this.started; i < this.counts.length; i++) n += this.counts[i]!;
    return n;
  }

  latencySummary(): LatencySummary {
    return this.latency.summary();
  }
}

/** Routes handler calls (by sequence number) to the phase that sent them. */
export class PhaseRouter {
  private readonly phases: PhaseTracker[] = [];
  private next = 0;
  /** Handler calls whose sequence number matches no phase (corrupt or foreign messages). */
  strays = 0;

  /** Start a phase; its sequence numbers begin after every earlier phase's. */
  begin(name: string): PhaseTracker {
    const last = this.phases.at(-1);
    if (last && !last.closed) throw new Error(`phase ${last.name} not closed`);
    const p = new PhaseTracker(name, this.next);
    this.phases.push(p);
    return p;
  }

  /** The sequence number of send `i` of the open phase. */
  seq(i: number): number {
    return this.next + i;
  }

  /** End the open phase's sending: `started` sends used its sequence numbers. */
  close(p: PhaseTracker, started: number): void {
    p.started = started;
    p.closed = true;
    this.next = p.first + started;
  }

  /** A handler call for message `seq`. */
  seen = (seq: number, sentAt: number, seenAt: number): void => {
    if (!Number.isInteger(seq) || seq < 0) {
      this.strays++;
      return;
    }
    for (let k = this.phases.length - 1; k >= 0; k--) {
      const p = this.phases[k]!;
      if (seq >= p.first) {
        p.seen(seq - p.first, sentAt, seenAt);
        return;
      }
    }
    this.strays++;
  };
}

/** Delivery counts of a phase: the exactly-once check. */
export interface Counts {
  /** Enqueues started (messages). */
  sent: number;
  /** Of those, enqueues whose call failed (not counted as lost unless handled). */
  enqueueFailed: number;
  /** Distinct messages handled. */
  handled: number;
  /** Handler calls beyond the first, per message, summed. */
  duplicates: number;
  /** Successfully enqueued messages never handled. */
  missing: number;
  /** Handler calls for sequence numbers the phase never sent. */
  beyond: number;
}

/** The counts of `p` now; `failed` enqueues failed. */
export function countsOf(p: PhaseTracker, failed: number): Counts {
  return {
    sent: p.started,
    enqueueFailed: failed,
    handled: p.unique,
    duplicates: p.duplicates,
    // A failed enqueue that was never handled is counted as failed, not as lost.
    missing: Math.max(0, p.missing() - failed),
    beyond: p.beyond(),
  };
}

/** What breaks exactly-once in `c` (empty: every message handled once), one line each. */
export function exactlyOnceProblems(c: Counts): string[] {
  const out: string[] = [];
  if (c.enqueueFailed > 0) out.push(`${c.enqueueFailed} enqueue(s) failed`);
  if (c.missing > 0) out.push(`${c.missing} of ${c.sent - c.enqueueFailed} never handled`);
  if (c.duplicates > 0) out.push(`${c.duplicates} duplicate handler call(s)`);
  if (c.beyond > 0) out.push(`${c.beyond} handler call(s) for messages never sent`);
  return out;
}

/** A table cell for `c`: "20,000/20,000 once" or what went wrong. */
export function countsCell(c: Counts): string {
  const problems = exactlyOnceProblems(c);
  const handled = `${c.handled.toLocaleString("en-US")}/${c.sent.toLocaleString("en-US")}`;
  return problems.length === 0 ? `${handled} once` : `${handled}, ${problems.join(", ")}`;
}
