/**
 * Packets queued in the same turn of the event loop go out in one write: one syscall instead of
 * one per packet, which is where a busy broker, producer or consumer otherwise spends its CPU.
 * Used by both ends of a connection (server sessions and the client).
 */

/** Where the packets go (a net.Socket is one). */
export interface PacketSink {
  write(data: Buffer): boolean;
  readonly destroyed: boolean;
}

/** Coalesces the packets of one event-loop turn into one write to `sink`. */
export class PacketBatcher {
  private queued: Buffer[] = [];
  private scheduled = false;

  /** `onFull` runs when the sink reports back-pressure (its write returned false). */
  constructor(
    private readonly sink: PacketSink,
    private readonly onFull: () => void = () => undefined,
  ) {}

  /** Queue one encoded packet; it is written at the end of this turn (or by flush()). */
  push(packet: Buffer): void {
    this.queued.push(packet);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Write what is queued now. */
  flush(): void {
    this.scheduled = false;
    if (this.queued.length === 0 || this.sink.destroyed) return;
    const data = this.queued.length === 1 ? this.queued[0]! : Buffer.concat(this.queued);
    this.queued = [];
    if (!this.sink.write(data)) this.onFull();
  }
}
