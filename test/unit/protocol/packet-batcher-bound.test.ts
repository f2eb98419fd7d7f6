/** PacketBatcher's bound on unsent bytes (a peer that stopped reading). */
import { describe, expect, it } from "vitest";
import { PacketBatcher, type PacketSink } from "../../../src/protocol/packet-batcher.js";

/** A sink that never drains: what it was given stays in writableLength, like a socket whose peer does not read. */
function stuckSink(highWaterMark = 16) {
  const s = {
    destroyed: false,
    writableLength: 0,
    write(data: Buffer): boolean {
      s.writableLength += data.length;
      return s.writableLength < highWaterMark;
    },
  } satisfies PacketSink;
  return s;
}
const turn = () => new Promise((r) => setImmediate(r));

describe("PacketBatcher bound", () => {
  it("calls onOverflow once when queued plus buffered bytes pass the bound, then drops everything", async () => {
    const s = stuckSink();
    const overflows: number[] = [];
    let full = 0;
    const b = new PacketBatcher(s, () => full++, {
      maxUnsentBytes: 100,
      onOverflow: (n) => overflows.push(n),
    });
    b.push(Buffer.alloc(40));
    await turn();
    expect(s.writableLength).toBe(40);
    expect(b.unsentBytes).toBe(40);
    expect(full).toBe(1);
    b.push(Buffer.alloc(40));
    expect(overflows).toEqual([]);
    b.push(Buffer.alloc(40)); // 40 in the sink + 80 queued
    expect(overflows).toEqual([120]);
    b.push(Buffer.alloc(40));
    await turn();
    b.flush();
    expect(overflows).toEqual([120]);
    expect(s.writableLength).toBe(40); // nothing more written after the overflow
    expect(b.unsentBytes).toBe(40);
  });

  it("notices growth in the sink at a write, not only at a push", async () => {
    const s = stuckSink(1);
    const overflows: number[] = [];
    const b = new PacketBatcher(s, () => undefined, {
      maxUnsentBytes: 50,
      onOverflow: (n) => overflows.push(n),
    });
    for (let i = 0; i < 3; i++) {
      b.push(Buffer.alloc(20));
      await turn();
    }
    expect(overflows).toEqual([60]);
  });

  it("never overflows while the sink takes what it is given", async () => {
    const writes: Buffer[] = [];
    const sink: PacketSink = { destroyed: false, writableLength: 0, write: (d) => writes.push(d) > 0 };
    const overflows: number[] = [];
    const b = new PacketBatcher(sink, () => undefined, {
      maxUnsentBytes: 50,
      onOverflow: (n) => overflows.push(n),
    });
    for (let i = 0; i < 10; i++) {
      b.push(Buffer.alloc(30));
      await turn();
    }
    expect(writes).toHaveLength(10);
    expect(overflows).toEqual([]);
  });
});
