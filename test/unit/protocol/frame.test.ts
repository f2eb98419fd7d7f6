import { afterEach, describe, expect, it, vi } from "vitest";
import { ErrorCode } from "../../../src/errors.js";
import {
  encodePacket,
  FrameDecoder,
  HEADER_LENGTH,
  MAX_BODY_LENGTH,
  MAX_PACKET_SIZE,
  type Packet,
} from "../../../src/protocol/index.js";
import { expectKiteqError } from "./wire-helpers.js";

/** A header written by hand: opaque, cmdType, version 0, extension 0, bodyLen. */
function rawHeader(opaque: number, cmdType: number, bodyLen: number): Buffer {
  const h = Buffer.alloc(HEADER_LENGTH);
  h.writeUInt32BE(opaque, 0);
  h[4] = cmdType;
  h.writeInt32BE(bodyLen, 15);
  return h;
}

const PACKETS: Packet[] = [
  { opaque: 1, cmdType: 0x01, version: 0, extension: 0n, body: Buffer.from([0x08, 0x01]) },
  { opaque: 2, cmdType: 0x11, version: 0, extension: 0n, body: Buffer.alloc(0) },
  { opaque: 0xffffffff, cmdType: 0x12, version: -1, extension: -2n, body: Buffer.from("hello world") },
  { opaque: 3, cmdType: 0xff, version: 32767, extension: 1n << 62n, body: Buffer.alloc(40, 0xab) },
];
const STREAM = Buffer.concat(PACKETS.map(encodePacket));

function decodeChunks(chunks: Buffer[]): Packet[] {
  const decoder = new FrameDecoder();
  const out = chunks.flatMap((c) => decoder.push(c));
  expect(decoder.buffered).toBe(0);
  return out;
}

describe("encodePacket", () => {
  it("writes the header big-endian with version and extension defaulting to 0", () => {
    const out = encodePacket({ opaque: 0x0a0b0c0d, cmdType: 0x05, body: Buffer.from([0xee]) });
    expect(out.toString("hex")).toBe(`0a0b0c0d${"05"}${"0000"}${"00".repeat(8)}${"00000001"}ee`);
  });

  it("accepts the largest packet and refuses one byte more", () => {
    expect(encodePacket({ opaque: 1, cmdType: 0x11, body: Buffer.alloc(MAX_BODY_LENGTH) })).toHaveLength(
      MAX_PACKET_SIZE,
    );
    expectKiteqError(
      () => encodePacket({ opaque: 1, cmdType: 0x11, body: Buffer.alloc(MAX_BODY_LENGTH + 1) }),
      ErrorCode.FrameInvalid,
      /exceeds/,
    );
  });
});

describe("FrameDecoder", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("decodes many packets from one chunk, zero-length body included", () => {
    expect(decodeChunks([STREAM])).toEqual(PACKETS);
  });

  it("decodes the stream split at every byte boundary", () => {
    for (let i = 0; i <= STREAM.length; i++) {
      expect(decodeChunks([STREAM.subarray(0, i), STREAM.subarray(i)]), `split at ${i}`).toEqual(PACKETS);
    }
  });

  it("decodes the stream fed one byte at a time", () => {
    const chunks = [...STREAM].map((b) => Buffer.from([b]));
    expect(decodeChunks(chunks)).toEqual(PACKETS);
  });

  it("returns each packet as soon as its last byte arrives", () => {
    const decoder = new FrameDecoder();
    const first = encodePacket(PACKETS[0]!);
    expect(decoder.push(first.subarray(0, first.length - 1))).toEqual([]);
    expect(decoder.buffered).toBe(first.length - 1);
    expect(decoder.push(first.subarray(first.length - 1))).toEqual([PACKETS[0]]);
    expect(decoder.buffered).toBe(0);
  });

  it("decodes a zero-length body packet alone", () => {
    const bytes = rawHeader(9, 0x01, 0);
    expect(new FrameDecoder().push(bytes)).toEqual([
      { opaque: 9, cmdType: 0x01, version: 0, extension: 0n, body: Buffer.alloc(0) },
    ]);
  });

  it("returns a body inside one chunk as a view of it (no copy)", () => {
    const chunk = encodePacket(PACKETS[3]!);
    const [p] = new FrameDecoder().push(chunk);
    expect(p!.body.buffer).toBe(chunk.buffer);
    expect(p!.body.byteOffset).toBe(chunk.byteOffset + HEADER_LENGTH);
  });

  it("reassembles a 1 MiB body from 1 KiB chunks", () => {
    const body = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31) & 0xff;
    const stream = encodePacket({ opaque: 5, cmdType: 0x11, body });
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 1024) chunks.push(stream.subarray(i, i + 1024));
    const decoder = new FrameDecoder();
    const packets: Packet[] = [];
    for (const c of chunks) packets.push(...decoder.push(c));
    expect(packets).toHaveLength(1);
    expect(packets[0]!.body.equals(body)).toBe(true);
  });

  it("copies a body fed one byte at a time once, never concatenating (no O(n^2))", () => {
    const body = Buffer.alloc(256 * 1024, 0x5a);
    const stream = encodePacket({ opaque: 6, cmdType: 0x11, body });
    const decoder = new FrameDecoder();
    const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
    const concat = vi.spyOn(Buffer, "concat");
    const packets: Packet[] = [];
    for (let i = 0; i < stream.length; i++) packets.push(...decoder.push(stream.subarray(i, i + 1)));
    expect(packets).toHaveLength(1);
    expect(packets[0]!.body.equals(body)).toBe(true);
    expect(concat).not.toHaveBeenCalled();
    expect(allocUnsafe.mock.calls).toEqual([[body.length]]);
  });

  it("accepts bodyLen = MAX_BODY_LENGTH (waits for the body)", () => {
    const decoder = new FrameDecoder();
    expect(decoder.push(rawHeader(1, 0x11, MAX_BODY_LENGTH))).toEqual([]);
    expect(decoder.buffered).toBe(HEADER_LENGTH);
  });

  it("refuses a packet larger than 2 MiB from its header alone, allocating nothing", () => {
    const header = rawHeader(1, 0x11, MAX_PACKET_SIZE); // header + 2 MiB body > 2 MiB
    const decoder = new FrameDecoder();
    const allocs = [
      vi.spyOn(Buffer, "alloc"),
      vi.spyOn(Buffer, "allocUnsafe"),
      vi.spyOn(Buffer, "allocUnsafeSlow"),
      vi.spyOn(Buffer, "concat"),
    ];
    const err = expectKiteqError(() => decoder.push(header), ErrorCode.FrameInvalid, /2097171 bytes exceeds/);
    expect(err.context).toMatchObject({ opaque: 1, bodyLength: MAX_PACKET_SIZE });
    for (const spy of allocs) expect(spy).not.toHaveBeenCalled();
  });

  it("refuses bodyLen = MAX_BODY_LENGTH + 1 even with the header split across chunks", () => {
    const header = rawHeader(1, 0x11, MAX_BODY_LENGTH + 1);
    const decoder = new FrameDecoder();
    expect(decoder.push(header.subarray(0, 10))).toEqual([]);
    expectKiteqError(() => decoder.push(header.subarray(10)), ErrorCode.FrameInvalid, /exceeds/);
  });

  it("refuses a negative bodyLen and stays unusable afterwards", () => {
    const decoder = new FrameDecoder();
    const good = encodePacket(PACKETS[0]!);
    expect(decoder.push(good)).toEqual([PACKETS[0]]);
    const first = expectKiteqError(
      () => decoder.push(rawHeader(2, 0x01, -1)),
      ErrorCode.FrameInvalid,
      /negative body length -1/,
    );
    const again = expectKiteqError(() => decoder.push(good), ErrorCode.FrameInvalid);
    expect(again).toBe(first);
  });

  it("ignores empty chunks", () => {
    const decoder = new FrameDecoder();
    expect(decoder.push(Buffer.alloc(0))).toEqual([]);
    expect(decoder.push(STREAM)).toEqual(PACKETS);
    expect(decoder.push(Buffer.alloc(0))).toEqual([]);
  });
});
