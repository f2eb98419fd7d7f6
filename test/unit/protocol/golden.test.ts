/**
 * Golden bytes: every command's packet written byte by byte from kiteq-wire.md (header fields
 * big-endian; protobuf tag = field number << 3 | wire type, 0 varint, 2 length-delimited).
 */
import { describe, expect, it } from "vitest";
import {
  type CommandBody,
  CommandType,
  decodeBody,
  decodeBytesMessage,
  decodeConnAuthAck,
  decodeConnMeta,
  decodeDeliverAck,
  decodeHeartBeat,
  decodeMessageStoreAck,
  decodeStringMessage,
  decodeTxACKPacket,
  encodeBody,
  encodeBytesMessage,
  encodeConnAuthAck,
  encodeConnMeta,
  encodeDeliverAck,
  encodeHeartBeat,
  encodeMessageStoreAck,
  encodePacket,
  encodeStringMessage,
  encodeTxACKPacket,
  FrameDecoder,
  type Header,
} from "../../../src/protocol/index.js";
import { ascii } from "./wire-helpers.js";

const ID = "0123456789abcdef0123456789abcdef";
const ZERO_EXT = [0, 0, 0, 0, 0, 0, 0, 0];
const MINUS_ONE_VARINT = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];

/** A minimal header: only required fields, their KiteQ defaults, optional ones at zero. */
const SMALL_HEADER: Header = {
  messageId: "m",
  topic: "t",
  messageType: "x",
  expiredTime: -1,
  deliverLimit: 100,
  groupId: "g",
  commit: false,
  fly: false,
  properties: [],
  createTime: 0,
  snappy: false,
};
// biome-ignore format: one field per line
const SMALL_HEADER_BYTES = [
  0x0a, 0x01, ...ascii("m"),  // 1 messageId
  0x12, 0x01, ...ascii("t"),  // 2 topic
  0x1a, 0x01, ...ascii("x"),  // 3 messageType
  0x20, ...MINUS_ONE_VARINT,  // 4 expiredTime -1 (10-byte varint)
  0x28, 0x64,                 // 5 deliverLimit 100
  0x32, 0x01, ...ascii("g"),  // 6 groupId
  0x38, 0x00,                 // 7 commit false
  0x40, 0x00,                 // 8 fly false
  0x50, 0x00,                 // 10 createTime 0
  0x58, 0x00,                 // 11 snappy false
]; // 33 bytes

/** A full header: properties, multi-byte varints, every flag set. */
const FULL_HEADER: Header = {
  messageId: ID,
  topic: "trade",
  messageType: "pay-succ",
  expiredTime: 1_700_000_000,
  deliverLimit: 3,
  groupId: "g1",
  commit: true,
  fly: true,
  properties: [{ key: "k", value: "v" }],
  createTime: 1_699_999_000,
  snappy: true,
};
// biome-ignore format: one field per line
const FULL_HEADER_BYTES = [
  0x0a, 0x20, ...ascii(ID),                       // 1 messageId (32 bytes)
  0x12, 0x05, ...ascii("trade"),                  // 2 topic
  0x1a, 0x08, ...ascii("pay-succ"),               // 3 messageType
  0x20, 0x80, 0xe2, 0xcf, 0xaa, 0x06,             // 4 expiredTime 1700000000 = 0x6553f100
  0x28, 0x03,                                     // 5 deliverLimit 3
  0x32, 0x02, ...ascii("g1"),                     // 6 groupId
  0x38, 0x01,                                     // 7 commit true
  0x40, 0x01,                                     // 8 fly true
  0x4a, 0x06, 0x0a, 0x01, ...ascii("k"), 0x12, 0x01, ...ascii("v"), // 9 properties[0] = Entry{k, v}
  0x50, 0x98, 0xda, 0xcf, 0xaa, 0x06,             // 10 createTime 1699999000
  0x58, 0x01,                                     // 11 snappy true
]; // 83 bytes

/** Header with two properties, one with an empty value, one with an empty key. */
const PROPS_HEADER: Header = {
  ...SMALL_HEADER,
  messageId: "m1",
  messageType: "mt",
  properties: [
    { key: "a", value: "" },
    { key: "", value: "b" },
  ],
};
// biome-ignore format: one field per line
const PROPS_HEADER_BYTES = [
  0x0a, 0x02, ...ascii("m1"),                     // 1 messageId
  0x12, 0x01, ...ascii("t"),                      // 2 topic
  0x1a, 0x02, ...ascii("mt"),                     // 3 messageType
  0x20, ...MINUS_ONE_VARINT,                      // 4 expiredTime -1
  0x28, 0x64,                                     // 5 deliverLimit 100
  0x32, 0x01, ...ascii("g"),                      // 6 groupId
  0x38, 0x00,                                     // 7 commit false
  0x40, 0x00,                                     // 8 fly false
  0x4a, 0x05, 0x0a, 0x01, ...ascii("a"), 0x12, 0x00, // 9 Entry{a, ""}
  0x4a, 0x05, 0x0a, 0x00, 0x12, 0x01, ...ascii("b"), // 9 Entry{"", b}
  0x50, 0x00,                                     // 10 createTime 0
  0x58, 0x00,                                     // 11 snappy false
]; // 49 bytes

interface Golden {
  name: string;
  opaque: number;
  version: number;
  extension: bigint;
  body: CommandBody;
  encode: (msg: never) => Buffer;
  decode: (buf: Buffer) => unknown;
  bytes: number[];
}

const GOLDEN: Golden[] = [
  {
    name: "HEARTBEAT",
    opaque: 1,
    version: 0,
    extension: 0n,
    body: { cmd: "HEARTBEAT", msg: { version: 300 } },
    encode: encodeHeartBeat,
    decode: decodeHeartBeat,
    // biome-ignore format: header then body
    bytes: [
      0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, ...ZERO_EXT, 0x00, 0x00, 0x00, 0x03,
      0x08, 0xac, 0x02, // 1 version 300
    ],
  },
  {
    name: "CONN_META",
    opaque: 2,
    version: 0,
    extension: 0n,
    body: { cmd: "CONN_META", msg: { groupId: "g1", secretKey: "s3cret", warmingupSec: 10 } },
    encode: encodeConnMeta,
    decode: decodeConnMeta,
    // biome-ignore format: header then body
    bytes: [
      0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, ...ZERO_EXT, 0x00, 0x00, 0x00, 0x0e,
      0x0a, 0x02, ...ascii("g1"),     // 1 groupId
      0x12, 0x06, ...ascii("s3cret"), // 2 secretKey
      0x18, 0x0a,                     // 3 warmingupSec 10
    ],
  },
  {
    name: "CONN_AUTH",
    opaque: 2,
    version: 0,
    extension: 0n,
    body: { cmd: "CONN_AUTH", msg: { status: false, feedback: "bad secret" } },
    encode: encodeConnAuthAck,
    decode: decodeConnAuthAck,
    // biome-ignore format: header then body
    bytes: [
      0x00, 0x00, 0x00, 0x02, 0x03, 0x00, 0x00, ...ZERO_EXT, 0x00, 0x00, 0x00, 0x0e,
      0x08, 0x00,                         // 1 status false
      0x12, 0x0a, ...ascii("bad secret"), // 2 feedback
    ],
  },
  {
    name: "MESSAGE_STORE_ACK",
    opaque: 0x01020304,
    version: 0,
    extension: 0n,
    body: { cmd: "MESSAGE_STORE_ACK", msg: { messageId: ID, status: true, feedback: "ok" } },
    encode: encodeMessageStoreAck,
    decode: decodeMessageStoreAck,
    // biome-ignore format: header then body
    bytes: [
      0x01, 0x02, 0x03, 0x04, 0x04, 0x00, 0x00, ...ZERO_EXT, 0x00, 0x00, 0x00, 0x28,
      0x0a, 0x20, ...ascii(ID),   // 1 messageId
      0x10, 0x01,                 // 2 status true
      0x1a, 0x02, ...ascii("ok"), // 3 feedback
    ],
  },
  {
    name: "DELIVER_ACK",
    opaque: 0x80000000,
    version: 0,
    extension: 0n,
    body: {
      cmd: "DELIVER_ACK",
      msg: { messageId: "m", topic: "t", messageType: "mt", groupId: "g", status: true, feedback: "" },
    },
    encode: encodeDeliverAck,
    decode: decodeDeliverAck,
    // biome-ignore format: header then body
    bytes: [
      0x80, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, ...ZERO_EXT, 0x00, 0x00, 0x00, 0x11,
      0x0a, 0x01, ...ascii("m"),  // 1 messageId
      0x12, 0x01, ...ascii("t"),  // 2 topic
      0x1a, 0x02, ...ascii("mt"), // 3 messageType
      0x22, 0x01, ...ascii("g"),  // 4 groupId
      0x28, 0x01,                 // 5 status true
      0x32, 0x00,                 // 6 feedback ""
    ],
  },
  {
    name: "TX_ACK",
    opaque: 7,
    version: 0,
    extension: -1n,
    body: { cmd: "TX_ACK", msg: { header: SMALL_HEADER, status: 0, feedback: "Server Check" } },
    encode: encodeTxACKPacket,
    decode: decodeTxACKPacket,
    // biome-ignore format: header then body
    bytes: [
      0x00, 0x00, 0x00, 0x07, 0x06, 0x00, 0x00,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // extension -1
      0x00, 0x00, 0x00, 0x33,
      0x0a, 0x21, ...SMALL_HEADER_BYTES,    // 1 header (33 bytes)
      0x10, 0x00,                           // 2 status 0
      0x1a, 0x0c, ...ascii("Server Check"), // 3 feedback
    ],
  },
  {
    name: "BYTES_MESSAGE",
    opaque: 0xffffffff,
    version: 0,
    extension: 0n,
    body: { cmd: "BYTES_MESSAGE", msg: { header: FULL_HEADER, body: Buffer.from([0x00, 0xff, 0x10]) } },
    encode: encodeBytesMessage,
    decode: decodeBytesMessage,
    // biome-ignore format: header then body
    bytes: [
      0xff, 0xff, 0xff, 0xff, 0x11, 0x00, 0x00, ...ZERO_EXT, 0x00, 0x00, 0x00, 0x5a,
      0x0a, 0x53, ...FULL_HEADER_BYTES, // 1 header (83 bytes)
      0x12, 0x03, 0x00, 0xff, 0x10,     // 2 body
    ],
  },
  {
    name: "STRING_MESSAGE",
    opaque: 0x100,
    version: -2,
    extension: 0x0102030405060708n,
    body: { cmd: "STRING_MESSAGE", msg: { header: PROPS_HEADER, body: "héllo" } },
    encode: encodeStringMessage,
    decode: decodeStringMessage,
    // biome-ignore format: header then body
    bytes: [
      0x00, 0x00, 0x01, 0x00, 0x12,
      0xff, 0xfe,                                     // version -2
      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // extension
      0x00, 0x00, 0x00, 0x3b,
      0x0a, 0x31, ...PROPS_HEADER_BYTES,              // 1 header (49 bytes)
      0x12, 0x06, 0x68, 0xc3, 0xa9, 0x6c, 0x6c, 0x6f, // 2 body "héllo" in UTF-8
    ],
  },
];

describe("golden bytes", () => {
  it("covers every command", () => {
    expect(GOLDEN.map((g) => g.name).sort()).toEqual(Object.keys(CommandType).sort());
  });

  describe.each(GOLDEN)("$name", (g) => {
    const expected = Buffer.from(g.bytes);
    const cmdType = CommandType[g.body.cmd];

    it("encodes to exactly the hand-written bytes", () => {
      const body = g.encode(g.body.msg as never);
      const packet = encodePacket({
        opaque: g.opaque,
        cmdType,
        version: g.version,
        extension: g.extension,
        body,
      });
      expect(packet.toString("hex")).toBe(expected.toString("hex"));
    });

    it("encodeBody gives the same body", () => {
      expect(encodeBody(g.body).toString("hex")).toBe(expected.subarray(19).toString("hex"));
    });

    it("decodes back to the packet and the message", () => {
      const packets = new FrameDecoder().push(expected);
      expect(packets).toHaveLength(1);
      const p = packets[0]!;
      expect({ opaque: p.opaque, cmdType: p.cmdType, version: p.version, extension: p.extension }).toEqual({
        opaque: g.opaque,
        cmdType,
        version: g.version,
        extension: g.extension,
      });
      expect(g.decode(p.body)).toEqual(g.body.msg);
      expect(decodeBody(p.cmdType, p.body)).toEqual(g.body);
    });
  });

  it("decodes a bytes body as a Buffer", () => {
    const g = GOLDEN.find((x) => x.name === "BYTES_MESSAGE")!;
    const msg = decodeBytesMessage(Buffer.from(g.bytes).subarray(19));
    expect(Buffer.isBuffer(msg.body)).toBe(true);
    expect([...msg.body]).toEqual([0x00, 0xff, 0x10]);
  });
});
