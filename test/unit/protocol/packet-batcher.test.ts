import { describe, expect, it } from "vitest";
import { PacketBatcher, type PacketSink } from "../../../src/protocol/packet-batcher.js";

function sink(accept = true) {
  const writes: Buffer[] = [];
  const s: PacketSink & { destroyed: boolean } = {
    destroyed: false,
    write: (data) => {
      writes.push(data);
      return accept;
    },
  };
  return { s, writes };
}
const turn = () => new Promise((r) => setImmediate(r));

describe("PacketBatcher", () => {
  it("writes the packets of one turn once, in order", async () => {
    const { s, writes } = sink();
    const b = new PacketBatcher(s);
    b.push(Buffer.from("ab"));
    b.push(Buffer.from("c"));
    expect(writes).toHaveLength(0);
    await turn();
    expect(writes.map(String)).toEqual(["abc"]);
    b.push(Buffer.from("d"));
    await turn();
    expect(writes.map(String)).toEqual(["abc", "d"]);
  });

  it("flush writes at once; nothing goes to a destroyed sink", async () => {
    const { s, writes } = sink();
    const b = new PacketBatcher(s);
    b.push(Buffer.from("x"));
    b.flush();
    expect(writes.map(String)).toEqual(["x"]);
    s.destroyed = true;
    b.push(Buffer.from("y"));
    await turn();
    expect(writes.map(String)).toEqual(["x"]);
  });

  it("tells back-pressure", async () => {
    const { s } = sink(false);
    let full = 0;
    const b = new PacketBatcher(s, () => full++);
    b.push(Buffer.from("x"));
    await turn();
    expect(full).toBe(1);
  });
});
