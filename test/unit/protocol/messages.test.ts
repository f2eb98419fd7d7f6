import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { ErrorCode, KiteqError } from "../../../src/errors.js";
import {
  decodeBody,
  decodeBytesMessage,
  decodeConnAuthAck,
  decodeConnMeta,
  decodeDeliverAck,
  decodeEntry,
  decodeHeader,
  decodeHeartBeat,
  decodeMessageStoreAck,
  decodeStringMessage,
  decodeTxACKPacket,
  encodeBytesMessage,
  encodeConnAuthAck,
  encodeConnMeta,
  encodeDeliverAck,
  encodeEntry,
  encodeHeader,
  encodeHeartBeat,
  encodeMessageStoreAck,
  encodeStringMessage,
  encodeTxACKPacket,
  type Header,
  TxStatus,
} from "../../../src/protocol/index.js";
import { ascii, expectKiteqError, fieldsOf, withoutField } from "./wire-helpers.js";

const HEADER: Header = {
  messageId: "0123456789abcdef0123456789abcdef",
  topic: "trade",
  messageType: "pay-succ",
  expiredTime: 1_700_000_000,
  deliverLimit: 5,
  groupId: "g",
  commit: true,
  fly: false,
  properties: [{ key: "k", value: "v" }],
  createTime: 1_699_999_000,
  snappy: true,
};

/** kiteq-wire.md's message table: [rule, type, name, number, default]. */
type FieldSpec = [
  rule: "required" | "optional" | "repeated",
  type: string,
  name: string,
  id: number,
  def?: unknown,
];
const SPEC: Record<string, FieldSpec[]> = {
  HeartBeat: [["required", "int64", "version", 1]],
  ConnMeta: [
    ["required", "string", "groupId", 1],
    ["required", "string", "secretKey", 2],
    ["optional", "int32", "warmingupSec", 3, 0],
  ],
  ConnAuthAck: [
    ["required", "bool", "status", 1, true],
    ["required", "string", "feedback", 2],
  ],
  MessageStoreAck: [
    ["required", "string", "messageId", 1],
    ["required", "bool", "status", 2, true],
    ["required", "string", "feedback", 3],
  ],
  DeliverAck: [
    ["required", "string", "messageId", 1],
    ["required", "string", "topic", 2],
    ["required", "string", "messageType", 3],
    ["required", "string", "groupId", 4],
    ["required", "bool", "status", 5, true],
    ["optional", "string", "feedback", 6],
  ],
  TxACKPacket: [
    ["required", "Header", "header", 1],
    ["required", "int32", "status", 2, 0],
    ["required", "string", "feedback", 3],
  ],
  Entry: [
    ["required", "string", "key", 1],
    ["required", "string", "value", 2],
  ],
  Header: [
    ["required", "string", "messageId", 1],
    ["required", "string", "topic", 2],
    ["required", "string", "messageType", 3],
    ["required", "int64", "expiredTime", 4, -1],
    ["required", "int32", "deliverLimit", 5, 100],
    ["required", "string", "groupId", 6],
    ["required", "bool", "commit", 7],
    ["required", "bool", "fly", 8, false],
    ["repeated", "Entry", "properties", 9],
    ["optional", "int64", "createTime", 10],
    ["optional", "bool", "snappy", 11],
  ],
  BytesMessage: [
    ["required", "Header", "header", 1],
    ["required", "bytes", "body", 2],
  ],
  StringMessage: [
    ["required", "Header", "header", 1],
    ["required", "string", "body", 2],
  ],
};

/** One valid encoded body per message, and its decoder. */
const SAMPLES: Record<string, { bytes: Buffer; decode: (b: Buffer) => unknown }> = {
  HeartBeat: { bytes: encodeHeartBeat({ version: 3 }), decode: decodeHeartBeat },
  ConnMeta: {
    bytes: encodeConnMeta({ groupId: "g", secretKey: "s", warmingupSec: 4 }),
    decode: decodeConnMeta,
  },
  ConnAuthAck: { bytes: encodeConnAuthAck({ status: true, feedback: "f" }), decode: decodeConnAuthAck },
  MessageStoreAck: {
    bytes: encodeMessageStoreAck({ messageId: "m", status: true, feedback: "f" }),
    decode: decodeMessageStoreAck,
  },
  DeliverAck: {
    bytes: encodeDeliverAck({
      messageId: "m",
      topic: "t",
      messageType: "x",
      groupId: "g",
      status: false,
      feedback: "f",
    }),
    decode: decodeDeliverAck,
  },
  TxACKPacket: {
    bytes: encodeTxACKPacket({ header: HEADER, status: TxStatus.COMMIT, feedback: "f" }),
    decode: decodeTxACKPacket,
  },
  Entry: { bytes: encodeEntry({ key: "k", value: "v" }), decode: decodeEntry },
  Header: { bytes: encodeHeader(HEADER), decode: decodeHeader },
  BytesMessage: {
    bytes: encodeBytesMessage({ header: HEADER, body: Buffer.from("b") }),
    decode: decodeBytesMessage,
  },
  StringMessage: { bytes: encodeStringMessage({ header: HEADER, body: "b" }), decode: decodeStringMessage },
};

describe("proto/kite_remoting.proto", () => {
  const root = new protobuf.Root().loadSync(
    new URL("../../../proto/kite_remoting.proto", import.meta.url).pathname,
    {
      keepCase: true,
    },
  );
  const ns = root.lookup("protocol") as protobuf.Namespace;

  it("declares exactly the messages of the wire contract", () => {
    expect(ns.nestedArray.map((t) => t.name).sort()).toEqual(Object.keys(SPEC).sort());
  });

  it.each(Object.entries(SPEC))("%s has the contract's fields, rules and defaults", (name, spec) => {
    const type = ns.lookupType(name);
    const actual = type.fieldsArray.map((f): FieldSpec => {
      const rule = f.required ? "required" : f.repeated ? "repeated" : "optional";
      const def = (f.options as { default?: unknown } | undefined)?.default;
      return def === undefined ? [rule, f.type, f.name, f.id] : [rule, f.type, f.name, f.id, def];
    });
    expect(actual).toEqual(spec);
  });
});

describe("missing required fields", () => {
  const cases = Object.entries(SPEC).flatMap(([name, spec]) =>
    spec.filter(([rule]) => rule === "required").map(([, , field, id]) => ({ name, field, id })),
  );

  it.each(cases)("$name without $field is BodyInvalid naming the field", ({ name, field, id }) => {
    const sample = SAMPLES[name]!;
    expect(() => sample.decode(sample.bytes)).not.toThrow();
    const err = expectKiteqError(
      () => sample.decode(withoutField(sample.bytes, id)),
      ErrorCode.BodyInvalid,
      `${name}: missing required field '${field}'`,
    );
    expect(err.context).toMatchObject({ field });
    expect(err.cause).toBeInstanceOf(protobuf.util.ProtocolError);
  });

  it("names the nested message when a header field is missing", () => {
    const header = withoutField(encodeHeader(HEADER), 2); // no topic
    // biome-ignore format: hand-written BytesMessage around the broken header
    const body = Buffer.from([0x0a, header.length, ...header, 0x12, 0x01, ...ascii("b")]);
    expectKiteqError(
      () => decodeBytesMessage(body),
      ErrorCode.BodyInvalid,
      "BytesMessage: missing required field 'topic' of Header",
    );
  });

  it("treats a required field sent with the wrong wire type as missing", () => {
    // field 1 (version) as length-delimited instead of varint
    expectKiteqError(
      () => decodeHeartBeat(Buffer.from([0x0a, 0x01, 0x00])),
      ErrorCode.BodyInvalid,
      "missing required field 'version'",
    );
  });
});

describe("decoding", () => {
  it("applies proto2 defaults to absent optional fields", () => {
    const meta = SAMPLES.ConnMeta!;
    expect(decodeConnMeta(withoutField(meta.bytes, 3))).toEqual({
      groupId: "g",
      secretKey: "s",
      warmingupSec: 0,
    });
    const ack = SAMPLES.DeliverAck!;
    expect(decodeDeliverAck(withoutField(ack.bytes, 6)).feedback).toBe("");
    let header = encodeHeader(HEADER);
    for (const id of [9, 10, 11]) header = withoutField(header, id);
    expect(decodeHeader(header)).toEqual({ ...HEADER, properties: [], createTime: 0, snappy: false });
  });

  it("keeps the last value of a repeated scalar field and every property entry", () => {
    // biome-ignore format: ConnAuthAck{status: true, feedback: "a"} then feedback "b" again
    const bytes = Buffer.from([0x08, 0x01, 0x12, 0x01, ...ascii("a"), 0x12, 0x01, ...ascii("b")]);
    expect(decodeConnAuthAck(bytes)).toEqual({ status: true, feedback: "b" });
  });

  it("skips unknown fields", () => {
    // HeartBeat{version: 7} plus unknown field 15 (varint 1) and field 14 (bytes "zz")
    const bytes = Buffer.from([0x08, 0x07, 0x78, 0x01, 0x72, 0x02, ...ascii("zz")]);
    expect(decodeHeartBeat(bytes)).toEqual({ version: 7 });
  });

  it("returns plain objects with every field as an own property", () => {
    const msg = decodeBytesMessage(SAMPLES.BytesMessage!.bytes);
    expect(Object.getPrototypeOf(msg)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(msg.header)).toBe(Object.prototype);
    expect(Object.keys(msg.header).sort()).toEqual(SPEC.Header!.map(([, , name]) => name).sort());
    expect(Object.getPrototypeOf(msg.header.properties[0])).toBe(Object.prototype);
  });

  it("decodes int64 fields at the edges of the safe integer range", () => {
    // biome-ignore format: varints
    expect(decodeHeartBeat(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])).version)
      .toBe(Number.MAX_SAFE_INTEGER);
    // biome-ignore format: varints
    expect(decodeHeartBeat(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])).version)
      .toBe(-1);
  });

  it("refuses an int64 beyond Number.MAX_SAFE_INTEGER", () => {
    // version = 2^53
    const bytes = Buffer.from([0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    expectKiteqError(() => decodeHeartBeat(bytes), ErrorCode.BodyInvalid, /version 9007199254740992 .*safe/);
    const header = { ...HEADER, expiredTime: 2 ** 60 };
    expectKiteqError(
      () => decodeBytesMessage(encodeBytesMessage({ header, body: Buffer.alloc(0) })),
      ErrorCode.BodyInvalid,
      /header\.expiredTime/,
    );
  });

  it("wraps malformed bodies in BodyInvalid and keeps the cause", () => {
    const truncated = SAMPLES.MessageStoreAck!.bytes.subarray(0, 2); // length says 1, nothing follows
    const err = expectKiteqError(
      () => decodeMessageStoreAck(truncated),
      ErrorCode.BodyInvalid,
      /^MessageStoreAck: /,
    );
    expect(err.cause).toBeInstanceOf(Error);
    expect(err.cause).not.toBeInstanceOf(KiteqError);
    expectKiteqError(() => decodeHeartBeat(Buffer.from([0x0f])), ErrorCode.BodyInvalid, /^HeartBeat: /); // wire type 7
    expectKiteqError(() => decodeHeartBeat(Buffer.alloc(0)), ErrorCode.BodyInvalid, /'version'/);
  });

  it("returns the bytes body as a view of the input (no copy)", () => {
    const bytes = SAMPLES.BytesMessage!.bytes;
    const msg = decodeBytesMessage(bytes);
    expect(msg.body.buffer).toBe(bytes.buffer);
    expect(fieldsOf(bytes).at(-1)!.bytes.subarray(2).equals(msg.body)).toBe(true);
  });
});

describe("decodeBody", () => {
  it("refuses an unknown command with UnknownCommand", () => {
    expectKiteqError(() => decodeBody(0x07, Buffer.alloc(0)), ErrorCode.UnknownCommand, "UNKNOWN(0x07)");
  });

  it("passes BodyInvalid through for a known command", () => {
    expectKiteqError(() => decodeBody(0x11, Buffer.from([0x12, 0x00])), ErrorCode.BodyInvalid, "'header'");
  });
});
