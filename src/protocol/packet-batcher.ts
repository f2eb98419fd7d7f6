/**
 * Packets queued in the same turn of the event loop go out in one write: one syscall instead of
 * one per packet, which is where a busy broker, producer or consumer otherwise spends its CPU.
 * Used by both ends of a connection (server sessions and the client).
 *
 * Optionally bounded (UnsentBound): a peer that stops reading makes the bytes the kernel has not
 * taken (the sink's `writableLength`) grow. When they exceed `maxUnsentBytes` and the kernel has
 * taken nothing for `stallMs`, `onOverflow` runs once and nothing more is written (the owner
 * closes the connection). The stall condition keeps a healthy reader that just got a large burst
 * (a consumer's whole in-flight window at once) from being cut off while it drains it; a peer
 * that reads nothing is closed `stallMs` after it passed the bound. Progress is seen per chunk
 * written (at most CHUNK_BYTES), so a large burst still shows progress as it drains.
 */

/** Where the packets go (a net.Socket is one). */
export interface PacketSink {
  /** `done` runs once the kernel took `data` (net.Socket's write callback). */
  write(data: Buffer, done?: (err?: Error | null) => void): boolean;
  readonly destroyed: boolean;
  /** Bytes the sink holds that the kernel has not taken yet (net.Socket's writableLength). */
  readonly writableLength?: number;
}

/** The bound on unsent bytes and what to do past it. */
export interface UnsentBound {
  maxUnsentBytes: number;
  /** How long the kernel may take nothing while the bound is exceeded; default DEFAULT_STALL_MS. */
  stallMs?: number;
  /** Runs once, with the unsent bytes, when the bound is exceeded and the peer stalled. */
  onOverflow: (unsentBytes: number) => void;
}

/** Default of UnsentBound.stallMs. */
export const DEFAULT_STALL_MS = 1_000;
/** Writes of a bounded batcher are split into chunks of at most this size (progress granularity). */
export const CHUNK_BYTES = 64 * 1024;

/** Coalesces the packets of one event-loop turn into one write to `sink`. */
export class PacketBatcher {
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  private scheduled = false;
  private overflowed = false;
  /** Bytes the kernel took (write callbacks), for the stall check. */
  private takenBytes = 0;
  private stallTimer: NodeJS.Timeout | undefined;

  /** `onFull` runs when the sink reports back-pressure (its write returned false). */
  constructor(
    private readonly sink: PacketSink,
    private readonly onFull: () => void = () => undefined,
    private readonly bound?: UnsentBound,
  ) {}

  /** Bytes queued here and in the sink, not yet taken by the kernel. */
  get unsentBytes(): number {
    return this.queuedBytes + (this.sink.writableLength ?? 0);
  }

  /** Queue one encoded packet; it is written at the end of this turn (or by flush()). */
  push(packet: Buffer): void {
    if (this.overflowed) return;
    this.queued.push(packet);
    this.queuedBytes += packet.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Write what is queued now. */
  flush(): void {
    this.scheduled = false;
    if (this.queued.length === 0 || this.sink.destroyed || this.overflowed) return;
    const data = this.queued.length === 1 ? this.queued[0]! : Buffer.concat(this.queued);
    this.queued = [];
    this.queuedBytes = 0;
    let accepted: boolean;
    if (this.bound === undefined) {
      accepted = this.sink.write(data);
    } else {
      accepted = true;
      for (let at = 0; at < data.length; at += CHUNK_BYTES) {
        const chunk = data.subarray(at, at + CHUNK_BYTES);
        accepted = this.sink.write(chunk, (err) => {
          if (!err) this.takenBytes += chunk.length;
        });
      }
      this.watchBound();
    }
    if (!accepted) this.onFull();
  }

  /** Stop the stall timer (the connection is closing). */
  dispose(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }

  /** Past the bound: check after stallMs that the kernel took something meanwhile. */
  private watchBound(): void {
    const bound = this.bound;
    if (bound === undefined || this.overflowed || this.stallTimer !== undefined) return;
    if (this.unsentBytes <= bound.maxUnsentBytes) return;
    const takenBefore = this.takenBytes;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      if (this.overflowed || this.sink.destroyed) return;
      const unsent = this.unsentBytes;
      if (unsent <= bound.maxUnsentBytes) return;
      if (this.takenBytes === takenBefore) {
        this.overflowed = true;
        this.queued = [];
        this.queuedBytes = 0;
        bound.onOverflow(unsent);
        return;
      }
      this.watchBound(); // still above, but draining: look again
    }, bound.stallMs ?? DEFAULT_STALL_MS);
    this.stallTimer.unref();
  }
}
