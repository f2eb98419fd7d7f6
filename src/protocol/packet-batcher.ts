/**
 * Packets queued in the same turn of the event loop go out in one write: one syscall instead of
 * one per packet, which is where a busy broker, producer or consumer otherwise spends its CPU.
 * Used by both ends of a connection (server sessions and the client).
 *
 * Optionally bounded: the bytes not yet handed to the kernel (queued here plus the sink's own
 * buffer, `writableLength`) may not exceed `maxUnsentBytes`. A peer that stops reading makes
 * them grow without end otherwise; past the bound, `onOverflow` runs once and nothing more is
 * queued (the owner closes the connection).
 */

/** Where the packets go (a net.Socket is one). */
export interface PacketSink {
  write(data: Buffer): boolean;
  readonly destroyed: boolean;
  /** Bytes the sink holds that the kernel has not taken yet (net.Socket's writableLength). */
  readonly writableLength?: number;
}

/** The bound on unsent bytes and what to do past it. */
export interface UnsentBound {
  maxUnsentBytes: number;
  /** Runs once, with the unsent bytes, when they exceed maxUnsentBytes. */
  onOverflow: (unsentBytes: number) => void;
}

/** Coalesces the packets of one event-loop turn into one write to `sink`. */
export class PacketBatcher {
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  private scheduled = false;
  private overflowed = false;

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
    if (this.checkBound()) return;
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
    if (!this.sink.write(data)) {
      if (this.checkBound()) return;
      this.onFull();
    }
  }

  /** True (and onOverflow called, once) when the unsent bytes exceed the bound. */
  private checkBound(): boolean {
    if (this.bound === undefined || this.overflowed) return this.overflowed;
    const unsent = this.unsentBytes;
    if (unsent <= this.bound.maxUnsentBytes) return false;
    this.overflowed = true;
    this.queued = [];
    this.queuedBytes = 0;
    this.bound.onOverflow(unsent);
    return true;
  }
}
