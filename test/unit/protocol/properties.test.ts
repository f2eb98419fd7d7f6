/** Property tests: arbitrary messages and packet streams survive encode/decode unchanged. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ErrorCode, KiteqError } from "../../../src/errors.js";
import {
  type CommandBody,
  CommandType,
  decodeBody,
  decodeEntry,
  decodeHeader,
  encodeBody,
  encodeEntry,
  encodeHeader,
  encodePacket,
  FrameDecoder,
  type Packet,
} from "../../../src/protocol/index.js";

const str = fc.string({ unit: "binary", maxLength: 40 });
const int64 = fc.maxSafeInteger();
const int32 = fc.integer();
const bytes = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));

const entry = fc.record({ key: str, value: str });
const header = fc.record({
  messageId: str,
  topic: str,
  messageType: str,
  expiredTime: int64,
  deliverLimit: int32,
  groupId: str,
  commit: fc.boolean(),
  fly: fc.boolean(),
  properties: fc.array(entry, { maxLength: 5 }),
  createTime: int64,
  snappy: fc.boolean(),
});

const commandBody: fc.Arbitrary<CommandBody> = fc.oneof(
  fc.record({ cmd: fc.constant("HEARTBEAT" as const), msg: fc.record({ version: int64 }) }),
  fc.record({
    cmd: fc.constant("CONN_META" as const),
    msg: fc.record({ groupId: str, secretKey: str, warmingupSec: int32 }),
  }),
  fc.record({
    cmd: fc.constant("CONN_AUTH" as const),
    msg: fc.record({ status: fc.boolean(), feedback: str }),
  }),
  fc.record({
    cmd: fc.constant("MESSAGE_STORE_ACK" as const),
    msg: fc.record({ messageId: str, status: fc.boolean(), feedback: str }),
  }),
  fc.record({
    cmd: fc.constant("DELIVER_ACK" as const),
    msg: fc.record({
      messageId: str,
      topic: str,
      messageType: str,
      groupId: str,
      status: fc.boolean(),
      feedback: str,
    }),
  }),
  fc.record({
    cmd: fc.constant("TX_ACK" as const),
    msg: fc.record({ header, status: int32, feedback: str }),
  }),
  fc.record({ cmd: fc.constant("BYTES_MESSAGE" as const), msg: fc.record({ header, body: bytes }) }),
  fc.record({ cmd: fc.constant("STRING_MESSAGE" as const), msg: fc.record({ header, body: str }) }),
);

const packet: fc.Arbitrary<Packet> = fc.record({
  opaque: fc.nat({ max: 0xffffffff }),
  cmdType: fc.nat({ max: 0xff }),
  version: fc.integer({ min: -0x8000, max: 0x7fff }),
  extension: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  body: bytes,
});

/** `stream` cut at the given (unsorted, possibly repeated) offsets. */
function cut(stream: Buffer, offsets: number[]): Buffer[] {
  const points = [...new Set(offsets.map((o) => o % (stream.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const p of [...points, stream.length]) {
    chunks.push(stream.subarray(start, p));
    start = p;
  }
  return chunks;
}

describe("properties", () => {
  it("every command body round-trips through encodeBody/decodeBody", () => {
    fc.assert(
      fc.property(commandBody, (b) => {
        expect(decodeBody(CommandType[b.cmd], encodeBody(b))).toEqual(b);
      }),
      { numRuns: 2000 },
    );
  });

  it("Header and Entry round-trip on their own", () => {
    fc.assert(
      fc.property(header, entry, (h, e) => {
        expect(decodeHeader(encodeHeader(h))).toEqual(h);
        expect(decodeEntry(encodeEntry(e))).toEqual(e);
      }),
    );
  });

  it("packet sequences cut into arbitrary chunks decode to the same packets", () => {
    fc.assert(
      fc.property(
        fc.array(packet, { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (packets, offsets) => {
          const stream = Buffer.concat(packets.map(encodePacket));
          const decoder = new FrameDecoder();
          const out = cut(stream, offsets).flatMap((c) => decoder.push(c));
          expect(out).toEqual(packets);
          expect(decoder.buffered).toBe(0);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("arbitrary bytes never decode to anything but a message or BodyInvalid", () => {
    const known = Object.values(CommandType);
    fc.assert(
      fc.property(fc.constantFrom(...known), fc.uint8Array({ maxLength: 64 }), (cmd, raw) => {
        try {
          decodeBody(cmd, Buffer.from(raw));
        } catch (err) {
          expect(err).toBeInstanceOf(KiteqError);
          expect((err as KiteqError).code).toBe(ErrorCode.BodyInvalid);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("arbitrary bytes never frame to anything but packets or FrameInvalid", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (raw) => {
        const decoder = new FrameDecoder();
        try {
          for (const p of decoder.push(Buffer.from(raw)))
            expect(p.body.length).toBeLessThanOrEqual(raw.length);
        } catch (err) {
          expect(err).toBeInstanceOf(KiteqError);
          expect((err as KiteqError).code).toBe(ErrorCode.FrameInvalid);
        }
      }),
    );
  });
});
