/**
 * KiteQ's publish rules (kiteq-wire.md, "Validation KiteQ applies on publish"), and the limits
 * that keep one client's bad input from failing a batch of others (src/publish/limits.ts): no
 * NUL and no broken UTF-8 in any string, bounded names and properties, times in range. Pure:
 * time, the served topics and the limits are parameters.
 */
import type { Header } from "../protocol/messages.js";
import { DELIVER_AT_PROPERTY } from "./deliver-at.js";
import {
  DEFAULT_PUBLISH_LIMITS,
  MAX_CREATE_TIME_AHEAD_SECONDS,
  MIN_CREATE_TIME_SECONDS,
  type PublishLimits,
} from "./limits.js";

const MESSAGE_ID = /^[0-9a-fA-F]{32}$/;
const MAX_DELIVER_LIMIT = 100;
const MAX_EXPIRY_SECONDS = 7 * 24 * 3600;

/** A header after KiteQ's normalisation. */
export interface NormalisedHeader {
  messageId: string;
  topic: string;
  messageType: string;
  groupId: string;
  commit: boolean;
  fly: boolean;
  expiresAt: Date;
  deliverLimit: number;
  createdAt: Date;
  properties: { key: string; value: string }[];
  snappy: boolean;
  /** `kiteq.deliverAt` when it is in the future: push to no group before it; else null. */
  deliverAt: Date | null;
}

/**
 * Either the normalised header or the reason the publish is refused (sent as feedback), with
 * the header field it is about.
 */
export type ValidationResult =
  | { ok: true; header: NormalisedHeader }
  | { ok: false; reason: string; field: string };

/**
 * Apply KiteQ's rules and the limits to a published header. `servesTopic` says whether this
 * broker serves the topic; `nowMs` is the current time.
 */
export function validatePublish(
  header: Header,
  servesTopic: (topic: string) => boolean,
  nowMs: number,
  limits: PublishLimits = DEFAULT_PUBLISH_LIMITS,
): ValidationResult {
  if (!MESSAGE_ID.test(header.messageId)) {
    return refuse(
      "messageId",
      `invalid messageId "${truncate(header.messageId)}": 32 hexadecimal characters expected`,
    );
  }
  for (const field of ["topic", "messageType", "groupId"] as const) {
    const bad = checkText(field, header[field], limits.maxNameBytes);
    if (bad !== undefined) return refuse(field, bad);
  }
  if (header.topic === "" || !servesTopic(header.topic)) {
    return refuse("topic", `unsupported topic "${truncate(header.topic)}"`);
  }
  if (header.messageType === "") return refuse("messageType", "empty messageType");
  if (header.groupId === "") return refuse("groupId", "empty groupId");
  // As KiteQ ("FLY MUST BE COMMITTED"): a fly message is pushed at once and never stored, so a
  // two-phase one could not wait for its commit (it was pushed, then its rollback ignored).
  if (header.fly && !header.commit) {
    return refuse("fly", "a fly message must be committed: send a two-phase message with fly false");
  }
  const badProperties = checkProperties(header.properties, limits);
  if (badProperties !== undefined) return badProperties;
  const nowSec = Math.floor(nowMs / 1000);
  if (!Number.isSafeInteger(header.createTime)) {
    return refuse("createTime", `invalid createTime ${header.createTime}: unix seconds expected`);
  }
  if (header.createTime < 0 || (header.createTime > 0 && header.createTime < MIN_CREATE_TIME_SECONDS)) {
    return refuse(
      "createTime",
      `invalid createTime ${header.createTime}: unix seconds from ${MIN_CREATE_TIME_SECONDS} (2000-01-01) expected, or 0`,
    );
  }
  if (header.createTime > nowSec + MAX_CREATE_TIME_AHEAD_SECONDS) {
    return refuse(
      "createTime",
      `invalid createTime ${header.createTime}: more than ${MAX_CREATE_TIME_AHEAD_SECONDS} s ahead of the broker's clock (${nowSec}); unix seconds expected`,
    );
  }
  if (!Number.isSafeInteger(header.expiredTime)) {
    return refuse("expiredTime", `invalid expiredTime ${header.expiredTime}: unix seconds expected`);
  }
  let expiredSec = header.expiredTime;
  // Expiring within the current second: stored after its expiry, never delivered (acked true).
  if (expiredSec > 0 && expiredSec <= nowSec) {
    return refuse("expiredTime", `expired message (expiredTime ${expiredSec} <= now ${nowSec})`);
  }
  if (expiredSec <= 0 || expiredSec > nowSec + MAX_EXPIRY_SECONDS) expiredSec = nowSec + MAX_EXPIRY_SECONDS;
  const deliverLimit =
    header.deliverLimit <= 0 || header.deliverLimit > MAX_DELIVER_LIMIT
      ? MAX_DELIVER_LIMIT
      : header.deliverLimit;
  const createdAt = header.createTime > 0 ? header.createTime * 1000 : nowMs;
  const delay = checkDeliverAt(header, expiredSec * 1000, nowMs);
  if (!delay.ok) return delay;
  return {
    ok: true,
    header: {
      messageId: header.messageId.toLowerCase(),
      topic: header.topic,
      messageType: header.messageType,
      groupId: header.groupId,
      commit: header.commit,
      fly: header.fly,
      expiresAt: new Date(expiredSec * 1000),
      deliverLimit,
      createdAt: new Date(createdAt),
      properties: header.properties.map((p) => ({ key: p.key, value: p.value })),
      snappy: header.snappy === true,
      deliverAt: delay.deliverAt,
    },
  };
}

const DELIVER_AT_FIELD = `properties[${JSON.stringify(DELIVER_AT_PROPERTY)}].value`;

/**
 * The `kiteq.deliverAt` property: decimal unix milliseconds, at most the message's expiry; a time
 * already past means "now". Refused on fly messages (never stored) and on uncommitted (2PC)
 * messages (their deliveries are made at the commit; not supported yet).
 */
function checkDeliverAt(
  header: Header,
  expiresAtMs: number,
  nowMs: number,
): { ok: true; deliverAt: Date | null } | { ok: false; reason: string; field: string } {
  let raw: string | undefined;
  for (const p of header.properties) if (p.key === DELIVER_AT_PROPERTY) raw = p.value;
  if (raw === undefined) return { ok: true, deliverAt: null };
  if (!/^[0-9]{1,15}$/.test(raw)) {
    return refuse(
      DELIVER_AT_FIELD,
      `invalid ${DELIVER_AT_PROPERTY} "${truncate(raw)}": unix milliseconds (decimal digits) expected`,
    );
  }
  const at = Number(raw);
  if (at > expiresAtMs) {
    return refuse(
      DELIVER_AT_FIELD,
      `invalid ${DELIVER_AT_PROPERTY} ${at}: after the message's expiry (${expiresAtMs} ms)`,
    );
  }
  if (header.fly)
    return refuse(DELIVER_AT_FIELD, `invalid ${DELIVER_AT_PROPERTY}: a fly message is never stored`);
  if (!header.commit) {
    return refuse(
      DELIVER_AT_FIELD,
      `invalid ${DELIVER_AT_PROPERTY}: not supported on uncommitted (two-phase) messages`,
    );
  }
  return { ok: true, deliverAt: at > nowMs ? new Date(at) : null };
}

function refuse(field: string, reason: string): { ok: false; reason: string; field: string } {
  return { ok: false, reason, field };
}

/** A lone UTF-16 surrogate: the client sent bytes that are not UTF-8 (PostgreSQL refuses them). */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `value` of header field `field` is refused, or undefined: NUL, broken UTF-8, too long. */
export function checkText(field: string, value: string, maxBytes: number): string | undefined {
  if (value.includes("\u0000")) return `invalid ${field}: contains a NUL byte`;
  if (LONE_SURROGATE.test(value)) return `invalid ${field}: not valid UTF-8`;
  // Cheap first: a string is at most 3 UTF-8 bytes per UTF-16 unit.
  if (value.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(value, "utf8");
    if (bytes > maxBytes) return `invalid ${field}: ${bytes} bytes, at most ${maxBytes} allowed`;
  }
  return undefined;
}

function checkProperties(
  properties: readonly { key: string; value: string }[],
  limits: PublishLimits,
): { ok: false; reason: string; field: string } | undefined {
  if (properties.length > limits.maxProperties) {
    return refuse(
      "properties",
      `invalid properties: ${properties.length} properties, at most ${limits.maxProperties} allowed`,
    );
  }
  let total = 0;
  for (let i = 0; i < properties.length; i++) {
    const { key, value } = properties[i]!;
    const keyField = `properties[${i}].key`;
    const badKey = checkText(keyField, key, Number.POSITIVE_INFINITY);
    if (badKey !== undefined) return refuse(keyField, badKey);
    const valueField = `properties[${JSON.stringify(truncate(key))}].value`;
    const badValue = checkText(valueField, value, Number.POSITIVE_INFINITY);
    if (badValue !== undefined) return refuse(valueField, badValue);
    total += Buffer.byteLength(key, "utf8") + Buffer.byteLength(value, "utf8");
  }
  if (total > limits.maxPropertiesBytes) {
    return refuse(
      "properties",
      `invalid properties: ${total} bytes of keys and values, at most ${limits.maxPropertiesBytes} allowed`,
    );
  }
  return undefined;
}

function truncate(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}...` : s;
}
