/**
 * The SDK's message shapes: what a producer sends (OutgoingMessage) and what a consumer gets
 * (ConsumedMessage), and their conversion to and from KiteQ headers.
 */
import { ErrorCode, KiteqError } from "../errors.js";
import type { Entry, Header } from "../protocol/messages.js";
import { DELIVER_AT_PROPERTY } from "../publish/deliver-at.js";
import { buildHeader, newMessageId } from "./connection.js";
import { compressBody, decompressBody } from "./snappy.js";

/** The message property that delays delivery (unix ms; see src/publish/deliver-at.ts). */
export { DELIVER_AT_PROPERTY };

/** A message to publish. */
export interface OutgoingMessage {
  topic: string;
  messageType: string;
  /** A string is sent as STRING_MESSAGE, bytes as BYTES_MESSAGE. */
  body: string | Uint8Array;
  /** Header properties (KiteQ's repeated Entry), e.g. trace ids. */
  properties?: Readonly<Record<string, string>>;
  /** When the message expires: a Date, or unix seconds as KiteQ counts; default: the broker's 7 days. */
  expiredTime?: Date | number;
  /** Delivery attempts per group before dead-lettering (1..100, KiteQ's default 100). */
  deliverLimit?: number;
  /** Deliver no earlier than this (a Date or unix milliseconds); sets the `kiteq.deliverAt` property. */
  deliverAt?: Date | number;
  /** A 32-hex id of your own (for idempotent re-sends); default a fresh UUID without dashes. */
  messageId?: string;
  /** Deliver without storing (KiteQ's fly messages): fast, lost if no consumer is online. */
  fly?: boolean;
}

/** What a successful send resolves with. */
export interface SendResult {
  messageId: string;
  /** Unix seconds, as sent in the header (the same on every retry). */
  createTime: number;
}

/** A received message. Answer it once with ack() or nack() (the handler form does that for you). */
export interface ConsumedMessage {
  readonly messageId: string;
  readonly topic: string;
  readonly messageType: string;
  /** The publishing group. */
  readonly producerGroup: string;
  readonly properties: Readonly<Record<string, string>>;
  /** Unix seconds. */
  readonly createTime: number;
  /** Body after snappy decompression; a string for STRING_MESSAGE, a Buffer for BYTES_MESSAGE. */
  readonly body: string | Buffer;
  /** The raw KiteQ header as received. */
  readonly header: Readonly<Header>;
  /** The body as UTF-8 text. */
  text(): string;
  /** Done: the broker records `acked` and will not deliver it to this group again. */
  ack(): void;
  /** Not done: the broker delivers it again later (its redelivery schedule). */
  nack(): void;
}

/** Build the header and wire body of `m` for publishing group `groupId`. */
export function toWire(
  m: OutgoingMessage,
  groupId: string,
  compressAboveBytes: number,
): { header: Header; body: Buffer | string } {
  const properties: Entry[] = Object.entries(m.properties ?? {}).map(([key, value]) => ({ key, value }));
  if (m.deliverAt !== undefined) {
    const at = m.deliverAt instanceof Date ? m.deliverAt.getTime() : m.deliverAt;
    if (!Number.isSafeInteger(at) || at < 0) {
      throw new KiteqError(ErrorCode.MessageInvalid, "deliverAt must be a Date or unix milliseconds", {
        key: "deliverAt",
      });
    }
    const i = properties.findIndex((p) => p.key === DELIVER_AT_PROPERTY);
    if (i >= 0) properties.splice(i, 1);
    properties.push({ key: DELIVER_AT_PROPERTY, value: String(at) });
  }
  const expiredTime =
    m.expiredTime === undefined
      ? -1
      : m.expiredTime instanceof Date
        ? Math.floor(m.expiredTime.getTime() / 1000)
        : m.expiredTime;
  const header = buildHeader({
    topic: m.topic,
    messageType: m.messageType,
    groupId,
    messageId: m.messageId ?? newMessageId(),
    expiredTime,
    deliverLimit: m.deliverLimit ?? 100,
    fly: m.fly === true,
    properties,
  });
  let body: Buffer | string = typeof m.body === "string" ? m.body : Buffer.from(m.body);
  const size = typeof body === "string" ? Buffer.byteLength(body) : body.length;
  if (compressAboveBytes > 0 && size >= compressAboveBytes) {
    body = compressBody(body);
    header.snappy = true;
  }
  return { header, body };
}

/** A pushed message as the SDK hands it out; `answer` is called once with the outcome. */
export function fromWire(
  header: Header,
  rawBody: Buffer | string,
  answer: (ok: boolean) => void,
): ConsumedMessage {
  const body = header.snappy ? decompressBody(rawBody, { messageId: header.messageId }) : rawBody;
  const properties: Record<string, string> = {};
  for (const e of header.properties) properties[e.key] = e.value;
  return {
    messageId: header.messageId,
    topic: header.topic,
    messageType: header.messageType,
    producerGroup: header.groupId,
    properties,
    createTime: header.createTime,
    body,
    header,
    text: () => (typeof body === "string" ? body : body.toString("utf8")),
    ack: () => answer(true),
    nack: () => answer(false),
  };
}
