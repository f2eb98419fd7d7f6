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
  /** One of the producer's `topics`. */
  topic: string;
  /** What bindings match (Direct: equal, Regx: a Go regular expression searched in it). */
  messageType: string;
  /** A string is sent as STRING_MESSAGE, bytes as BYTES_MESSAGE. */
  body: string | Uint8Array;
  /** Header properties (KiteQ's repeated Entry), e.g. trace ids. */
  properties?: Readonly<Record<string, string>> | undefined;
  /** When the message expires: a Date, or unix seconds as KiteQ counts; default: the broker's 7 days. */
  expiredTime?: Date | number | undefined;
  /** Delivery attempts per group before dead-lettering (1..100, KiteQ's default 100). */
  deliverLimit?: number | undefined;
  /** Deliver no earlier than this (a Date or unix milliseconds); sets the `kiteq.deliverAt` property. */
  deliverAt?: Date | number | undefined;
  /**
   * A 32-hex id of your own (for idempotent re-sends); default a fresh UUID without dashes. Sent,
   * stored, delivered and returned in lower case (the broker stores ids in lower case).
   */
  messageId?: string | undefined;
  /** Deliver without storing (KiteQ's fly messages): fast, lost if no consumer is online. */
  fly?: boolean | undefined;
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

/**
 * Unix time 1e11: in milliseconds 1973-03-03, in seconds the year 5138. A deliverAt (ms) below it
 * or an expiredTime (s) above it is the other unit by mistake, refused rather than taken to mean
 * "at once" or "never" (KiteQ would have stored it as 7 days).
 */
const SECONDS_OR_MILLIS = 1e11;

/** A UTF-16 surrogate without its pair: sent as U+FFFD, so the text would change on the way. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** What the broker would refuse or silently change, refused here with the field's name. */
function checkFields(m: OutgoingMessage): void {
  const invalid = (key: string, text: string) => new KiteqError(ErrorCode.MessageInvalid, text, { key });
  // Plain JavaScript callers: properties as a string or an array were sent as {"0": ...} entries,
  // and fly: "yes" as a stored message, both in silence.
  // A Map (or another class's instance) has no own entries: it was sent as no properties at all.
  const proto: unknown =
    typeof m.properties === "object" && m.properties !== null
      ? Object.getPrototypeOf(m.properties)
      : undefined;
  if (m.properties !== undefined && proto !== Object.prototype && proto !== null) {
    const given = Array.isArray(m.properties)
      ? "an array"
      : m.properties instanceof Map
        ? "a Map (use Object.fromEntries(map))"
        : describe(m.properties);
    throw invalid("properties", `properties must be an object of string values, not ${given}`);
  }
  if (m.fly !== undefined && typeof m.fly !== "boolean") {
    throw invalid("fly", `fly must be true or false, not ${describe(m.fly)}`);
  }
  if (typeof m.body !== "string" && !(m.body instanceof Uint8Array)) {
    throw invalid("body", `body must be a string or bytes (a Buffer or Uint8Array), not ${describe(m.body)}`);
  }
  for (const key of ["topic", "messageType"] as const) {
    if (typeof m[key] !== "string") throw invalid(key, `${key} must be a string, not ${describe(m[key])}`);
    // The broker refuses an empty one ("empty messageType", "unsupported topic"): say so before
    // anything is sent, as for the other fields it would refuse.
    if (m[key] === "") throw invalid(key, `${key} must not be empty`);
  }
  const texts: [string, string][] = [
    ["topic", m.topic],
    ["messageType", m.messageType],
    ...Object.entries(m.properties ?? {}).flatMap(([k, v]): [string, string][] => [
      [`properties key "${k}"`, k],
      [`properties["${k}"]`, v],
    ]),
  ];
  if (typeof m.body === "string") texts.push(["body", m.body]);
  for (const [key, text] of texts) {
    if (typeof text !== "string") throw invalid(key, `${key} must be a string, not ${describe(text)}`);
    if (LONE_SURROGATE.test(text)) {
      throw invalid(key, `${key} holds a lone UTF-16 surrogate: it cannot be sent as UTF-8 unchanged`);
    }
  }
  if (
    m.messageId !== undefined &&
    !(typeof m.messageId === "string" && /^[0-9a-fA-F]{32}$/.test(m.messageId))
  ) {
    const given = typeof m.messageId === "string" ? `"${m.messageId.slice(0, 40)}"` : describe(m.messageId);
    throw invalid("messageId", `messageId must be 32 hexadecimal characters, not ${given}`);
  }
  if (
    m.deliverLimit !== undefined &&
    !(Number.isInteger(m.deliverLimit) && m.deliverLimit >= 1 && m.deliverLimit <= 100)
  ) {
    throw invalid(
      "deliverLimit",
      `deliverLimit must be an integer from 1 to 100, not ${describe(m.deliverLimit)}`,
    );
  }
  if (typeof m.expiredTime === "number") {
    if (!Number.isSafeInteger(m.expiredTime) || (m.expiredTime < 0 && m.expiredTime !== -1)) {
      throw invalid(
        "expiredTime",
        `expiredTime must be a Date or unix seconds, not ${describe(m.expiredTime)}`,
      );
    }
    if (m.expiredTime >= SECONDS_OR_MILLIS) {
      throw invalid(
        "expiredTime",
        `expiredTime ${m.expiredTime} looks like unix milliseconds: it is unix seconds, as KiteQ counts (or a Date)`,
      );
    }
  } else if (
    m.expiredTime !== undefined &&
    !(m.expiredTime instanceof Date && !Number.isNaN(m.expiredTime.getTime()))
  ) {
    throw invalid(
      "expiredTime",
      `expiredTime must be a Date or unix seconds, not ${describe(m.expiredTime)}`,
    );
  }
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "string") return JSON.stringify(v.slice(0, 40));
  if (v instanceof Date) return "an invalid Date";
  return typeof v;
}

/** KQ_MESSAGE_INVALID unless `m` is an object (a plain JavaScript caller's `send(null)` was a TypeError). */
export function checkMessageObject(m: unknown): asserts m is OutgoingMessage {
  if (typeof m !== "object" || m === null || Array.isArray(m)) {
    throw new KiteqError(
      ErrorCode.MessageInvalid,
      `a message must be an object { topic, messageType, body }, not ${Array.isArray(m) ? "an array" : describe(m)}`,
      { key: "message" },
    );
  }
}

/** Build the header and wire body of `m` for publishing group `groupId`. */
export function toWire(
  m: OutgoingMessage,
  groupId: string,
  compressAboveBytes: number,
): { header: Header; body: Buffer | string } {
  // The caller checked that `m` is an object (checkMessageObject: the producer reads its topic first).
  checkFields(m);
  const properties: Entry[] = Object.entries(m.properties ?? {}).map(([key, value]) => ({ key, value }));
  if (m.deliverAt !== undefined) {
    const at = m.deliverAt instanceof Date ? m.deliverAt.getTime() : m.deliverAt;
    if (!Number.isSafeInteger(at) || at < 0) {
      throw new KiteqError(
        ErrorCode.MessageInvalid,
        `deliverAt must be a Date or unix milliseconds, not ${describe(m.deliverAt)}`,
        { key: "deliverAt" },
      );
    }
    if (at > 0 && at < SECONDS_OR_MILLIS) {
      throw new KiteqError(
        ErrorCode.MessageInvalid,
        `deliverAt ${at} looks like unix seconds: it is unix milliseconds (or a Date)`,
        { key: "deliverAt" },
      );
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
    messageId: m.messageId === undefined ? newMessageId() : m.messageId.toLowerCase(),
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
