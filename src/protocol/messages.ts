/**
 * KiteQ's protobuf (proto2) messages as plain TypeScript objects, with one encoder and one decoder
 * per message. The schema is proto/kite_remoting.proto, loaded once when this module loads; the
 * codecs are protobufjs's generated (reflection) ones, mapped to plain objects by hand (no
 * toObject()): int64 fields become numbers, bytes fields stay Buffers.
 *
 * Decoded objects always have every field: a missing optional field gets its proto2 default
 * (warmingupSec 0, DeliverAck.feedback "", createTime 0, snappy false), a missing required field
 * is an error. Encoders write every field, optional ones included. Bytes fields of decoded
 * messages are views of the input buffer (no copy).
 */
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { ErrorCode, KiteqError } from "../errors.js";

/** HEARTBEAT body. */
export interface HeartBeat {
  /** int64; KiteQ clients send a counter or unix time. */
  version: number;
}

/** CONN_META body: the client's handshake. */
export interface ConnMeta {
  groupId: string;
  secretKey: string;
  /** Seconds of reduced delivery rate after connecting; optional, default 0. */
  warmingupSec: number;
}

/** CONN_AUTH body: the broker's answer to the handshake. */
export interface ConnAuthAck {
  status: boolean;
  feedback: string;
}

/** MESSAGE_STORE_ACK body: the broker's answer to a publish. */
export interface MessageStoreAck {
  messageId: string;
  status: boolean;
  feedback: string;
}

/** DELIVER_ACK body: the consumer's answer to a push. */
export interface DeliverAck {
  messageId: string;
  topic: string;
  messageType: string;
  groupId: string;
  /** true: done; false: retry later. */
  status: boolean;
  /** Optional, default "". */
  feedback: string;
}

/** TX_ACK body: a transaction check (status 0) or a producer's answer (see TxStatus). */
export interface TxACKPacket {
  header: Header;
  status: number;
  feedback: string;
}

/** A message property. */
export interface Entry {
  key: string;
  value: string;
}

/** The header of every message. */
export interface Header {
  /** 32 hexadecimal characters. */
  messageId: string;
  topic: string;
  messageType: string;
  /** Unix seconds; -1 never. */
  expiredTime: number;
  deliverLimit: number;
  /** The publishing group. */
  groupId: string;
  /** false: two-phase commit, not yet committed. */
  commit: boolean;
  /** true: deliver, never store. */
  fly: boolean;
  properties: Entry[];
  /** Unix seconds; optional, default 0. */
  createTime: number;
  /** The body is snappy block-compressed; optional, default false. */
  snappy: boolean;
}

/** BYTES_MESSAGE body. */
export interface BytesMessage {
  header: Header;
  body: Buffer;
}

/** STRING_MESSAGE body. */
export interface StringMessage {
  header: Header;
  body: string;
}

/** TxACKPacket.status values. */
export const TxStatus = {
  /** A broker's check, or a producer that does not know yet. */
  UNKNOWN: 0,
  /** The producer's local transaction committed: deliver the message. */
  COMMIT: 1,
  /** The producer's local transaction rolled back: drop the message. */
  ROLLBACK: 2,
} as const;

/** A TxACKPacket.status value. */
export type TxStatus = (typeof TxStatus)[keyof typeof TxStatus];

// ---------------------------------------------------------------------------------------------
// Schema and protobufjs types

/** Where the schema lives: src/protocol/ and dist/protocol/ are both two levels under the root. */
const PROTO_FILE = fileURLToPath(new URL("../../proto/kite_remoting.proto", import.meta.url));

const root = new protobuf.Root().loadSync(PROTO_FILE, { keepCase: true });

const types = {
  HeartBeat: root.lookupType("protocol.HeartBeat"),
  ConnMeta: root.lookupType("protocol.ConnMeta"),
  ConnAuthAck: root.lookupType("protocol.ConnAuthAck"),
  MessageStoreAck: root.lookupType("protocol.MessageStoreAck"),
  DeliverAck: root.lookupType("protocol.DeliverAck"),
  TxACKPacket: root.lookupType("protocol.TxACKPacket"),
  Entry: root.lookupType("protocol.Entry"),
  Header: root.lookupType("protocol.Header"),
  BytesMessage: root.lookupType("protocol.BytesMessage"),
  StringMessage: root.lookupType("protocol.StringMessage"),
};

type TypeName = keyof typeof types;

/** protobufjs decodes int64 as a Long (when long.js is present, as here) or a number. */
type PbInt64 = number | { toNumber(): number; toString(): string };

/** What protobufjs's decoders return (messages with defaults on the prototype), as we read it. */
interface PbHeader extends Omit<Header, "expiredTime" | "createTime"> {
  expiredTime: PbInt64;
  createTime: PbInt64;
}
interface PbWithHeader {
  header: PbHeader;
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers

function decodeRaw<T>(name: TypeName, buf: Buffer): T {
  const reader = protobuf.Reader.create(buf);
  reader.discardUnknown = true;
  try {
    return types[name].decode(reader) as unknown as T;
  } catch (err) {
    throw bodyInvalid(name, err);
  }
}

const MISSING = /missing required '([^']+)'/;

/** BodyInvalid naming the message, and for a missing required field the field and its type. */
function bodyInvalid(name: TypeName, err: unknown): KiteqError {
  if (err instanceof protobuf.util.ProtocolError) {
    const field = MISSING.exec(err.message)?.[1] ?? "?";
    const owner = (err.instance as { $type?: { name?: string } } | undefined)?.$type?.name ?? name;
    const where = owner === name ? "" : ` of ${owner}`;
    return new KiteqError(
      ErrorCode.BodyInvalid,
      `${name}: missing required field '${field}'${where}`,
      { protoMessage: name, field },
      { cause: err },
    );
  }
  const reason = err instanceof Error ? err.message : String(err);
  return new KiteqError(ErrorCode.BodyInvalid, `${name}: ${reason}`, { protoMessage: name }, { cause: err });
}

/** An int64 as a number; BodyInvalid if it cannot be represented exactly. */
function int64(value: PbInt64, name: TypeName, field: string): number {
  const n = typeof value === "number" ? value : value.toNumber();
  if (Number.isSafeInteger(n)) return n;
  throw new KiteqError(
    ErrorCode.BodyInvalid,
    `${name}: ${field} ${value.toString()} is outside the safe integer range`,
    { protoMessage: name, field },
  );
}

function toHeader(h: PbHeader, name: TypeName, prefix = "header."): Header {
  const props = h.properties;
  const properties: Entry[] = new Array(props.length);
  for (let i = 0; i < props.length; i++) {
    const e = props[i]!;
    properties[i] = { key: e.key, value: e.value };
  }
  return {
    messageId: h.messageId,
    topic: h.topic,
    messageType: h.messageType,
    expiredTime: int64(h.expiredTime, name, `${prefix}expiredTime`),
    deliverLimit: h.deliverLimit,
    groupId: h.groupId,
    commit: h.commit,
    fly: h.fly,
    properties,
    createTime: int64(h.createTime, name, `${prefix}createTime`),
    snappy: h.snappy,
  };
}

function encodeRaw(name: TypeName, msg: object): Buffer {
  const out = types[name].encode(msg).finish();
  // protobufjs uses a BufferWriter under Node, so this is already a Buffer.
  return Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

// ---------------------------------------------------------------------------------------------
// Encoders and decoders. Every decoder throws KiteqError BodyInvalid for a body that does not
// decode, misses a required field, or has an int64 beyond Number.MAX_SAFE_INTEGER.

/** Encode a HeartBeat body. */
export function encodeHeartBeat(msg: HeartBeat): Buffer {
  return encodeRaw("HeartBeat", msg);
}

/** Decode a HeartBeat body. */
export function decodeHeartBeat(buf: Buffer): HeartBeat {
  const m = decodeRaw<{ version: PbInt64 }>("HeartBeat", buf);
  return { version: int64(m.version, "HeartBeat", "version") };
}

/** Encode a ConnMeta body. */
export function encodeConnMeta(msg: ConnMeta): Buffer {
  return encodeRaw("ConnMeta", msg);
}

/** Decode a ConnMeta body. */
export function decodeConnMeta(buf: Buffer): ConnMeta {
  const m = decodeRaw<ConnMeta>("ConnMeta", buf);
  return { groupId: m.groupId, secretKey: m.secretKey, warmingupSec: m.warmingupSec };
}

/** Encode a ConnAuthAck body. */
export function encodeConnAuthAck(msg: ConnAuthAck): Buffer {
  return encodeRaw("ConnAuthAck", msg);
}

/** Decode a ConnAuthAck body. */
export function decodeConnAuthAck(buf: Buffer): ConnAuthAck {
  const m = decodeRaw<ConnAuthAck>("ConnAuthAck", buf);
  return { status: m.status, feedback: m.feedback };
}

/** Encode a MessageStoreAck body. */
export function encodeMessageStoreAck(msg: MessageStoreAck): Buffer {
  return encodeRaw("MessageStoreAck", msg);
}

/** Decode a MessageStoreAck body. */
export function decodeMessageStoreAck(buf: Buffer): MessageStoreAck {
  const m = decodeRaw<MessageStoreAck>("MessageStoreAck", buf);
  return { messageId: m.messageId, status: m.status, feedback: m.feedback };
}

/** Encode a DeliverAck body. */
export function encodeDeliverAck(msg: DeliverAck): Buffer {
  return encodeRaw("DeliverAck", msg);
}

/** Decode a DeliverAck body. */
export function decodeDeliverAck(buf: Buffer): DeliverAck {
  const m = decodeRaw<DeliverAck>("DeliverAck", buf);
  return {
    messageId: m.messageId,
    topic: m.topic,
    messageType: m.messageType,
    groupId: m.groupId,
    status: m.status,
    feedback: m.feedback,
  };
}

/** Encode a TxACKPacket body. */
export function encodeTxACKPacket(msg: TxACKPacket): Buffer {
  return encodeRaw("TxACKPacket", msg);
}

/** Decode a TxACKPacket body. */
export function decodeTxACKPacket(buf: Buffer): TxACKPacket {
  const m = decodeRaw<PbWithHeader & { status: number; feedback: string }>("TxACKPacket", buf);
  return { header: toHeader(m.header, "TxACKPacket"), status: m.status, feedback: m.feedback };
}

/** Encode an Entry (a message property) on its own. */
export function encodeEntry(msg: Entry): Buffer {
  return encodeRaw("Entry", msg);
}

/** Decode an Entry on its own. */
export function decodeEntry(buf: Buffer): Entry {
  const m = decodeRaw<Entry>("Entry", buf);
  return { key: m.key, value: m.value };
}

/** Encode a Header on its own. */
export function encodeHeader(msg: Header): Buffer {
  return encodeRaw("Header", msg);
}

/** Decode a Header on its own. */
export function decodeHeader(buf: Buffer): Header {
  return toHeader(decodeRaw<PbHeader>("Header", buf), "Header", "");
}

/** Encode a BytesMessage body. */
export function encodeBytesMessage(msg: BytesMessage): Buffer {
  return encodeRaw("BytesMessage", msg);
}

/** Decode a BytesMessage body; `body` is a view of `buf`. */
export function decodeBytesMessage(buf: Buffer): BytesMessage {
  const m = decodeRaw<PbWithHeader & { body: Buffer }>("BytesMessage", buf);
  return { header: toHeader(m.header, "BytesMessage"), body: m.body };
}

/** Encode a StringMessage body. */
export function encodeStringMessage(msg: StringMessage): Buffer {
  return encodeRaw("StringMessage", msg);
}

/** Decode a StringMessage body. */
export function decodeStringMessage(buf: Buffer): StringMessage {
  const m = decodeRaw<PbWithHeader & { body: string }>("StringMessage", buf);
  return { header: toHeader(m.header, "StringMessage"), body: m.body };
}
