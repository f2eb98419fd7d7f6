/** PacketBatcher's bound on unsent bytes (a peer that stopped reading). */
import { afterEach, describe, expect, it, vi } from "vitest";
import { CHUNK_BYTES, PacketBatcher, type PacketSink } from "../../../src/protocol/packet-batcher.js";

/**
 * A sink whose kernel takes `take()` bytes per call of `drain()` (0 = a peer that never reads):
 * what it was given and the kernel did not take stays in writableLength.
 */
function sink() {
  const pending: { data: Buffer; done?: (err?: Error | null) => void }[] = [];
  const writes: Buffer[] = [];
  const s = {
    destroyed: false,
    writableLength: 0,
    write(data: Buffer, done?: (err?: Error | null) => void): boolean {
      writes.push(data);
      pending.push({ data, done });
      s.writableLength += data.length;
      return s.writableLength < 16;
    },
    /** The kernel takes the oldest pending chunk. */
    drainOne(): void {
      const p = pending.shift();
      if (p === undefined) return;
      s.writableLength -= p.data.length;
      p.done?.(null);
    },
  } satisfies PacketSink & Record<string, unknown>;
  return { s, writes };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("PacketBatcher bound", () => {
  it("closes (onOverflow, once) a peer past the bound that takes nothing for stallMs, and writes nothing more", async () => {
    vi.useFakeTimers();
    const { s, writes } = sink();
    const overflows: number[] = [];
    let full = 0;
    const b = new PacketBatcher(s, () => full++, {
      maxUnsentBytes: 100,
      stallMs: 1_000,
      onOverflow: (n) => overflows.push(n),
    });
    b.push(Buffer.alloc(60));
    b.flush();
    expect(b.unsentBytes).toBe(60);
    expect(full).toBe(1);
    b.push(Buffer.alloc(60));
    b.flush();
    expect(b.unsentBytes).toBe(120);
    vi.advanceTimersByTime(999);
    expect(overflows).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(overflows).toEqual([120]);
    b.push(Buffer.alloc(60));
    b.flush();
    vi.advanceTimersByTime(5_000);
    expect(overflows).toEqual([120]);
    expect(writes).toHaveLength(2);
  });

  it("keeps a reader that is past the bound but draining (a burst), then stops watching below it", () => {
    vi.useFakeTimers();
    const { s } = sink();
    const overflows: number[] = [];
    const b = new PacketBatcher(s, () => undefined, {
      maxUnsentBytes: 100,
      stallMs: 1_000,
      onOverflow: (n) => overflows.push(n),
    });
    // One large burst in one turn: written in chunks, so progress shows as it drains.
    b.push(Buffer.alloc(3 * CHUNK_BYTES));
    b.flush();
    expect(b.unsentBytes).toBe(3 * CHUNK_BYTES);
    for (let i = 0; i < 3; i++) {
      vi.advanceTimersByTime(900);
      s.drainOne();
      vi.advanceTimersByTime(100);
    }
    expect(b.unsentBytes).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(overflows).toEqual([]);
  });

  it("never splits nor watches writes without a bound", () => {
    const { s, writes } = sink();
    const b = new PacketBatcher(s);
    b.push(Buffer.alloc(3 * CHUNK_BYTES));
    b.flush();
    expect(writes).toHaveLength(1);
  });
});
