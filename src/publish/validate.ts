/**
 * KiteQ's publish rules (kiteq-wire.md, "Validation KiteQ applies on publish"). Pure: time and
 * the served topics are parameters.
 */
import type { Header } from "../protocol/messages.js";

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
}

/** Either the normalised header or the reason the publish is refused (sent as feedback). */
export type ValidationResult = { ok: true; header: NormalisedHeader } | { ok: false; reason: string };

/**
 * Apply KiteQ's rules to a published header. `servesTopic` says whether this broker serves the
 * topic; `nowMs` is the current time.
 */
export function validatePublish(
  header: Header,
  servesTopic: (topic: string) => boolean,
  nowMs: number,
): ValidationResult {
  if (!MESSAGE_ID.test(header.messageId)) {
    return {
      ok: false,
      reason: `invalid messageId "${truncate(header.messageId)}": 32 hexadecimal characters expected`,
    };
  }
  if (header.topic === "" || !servesTopic(header.topic)) {
    return { ok: false, reason: `unsupported topic "${truncate(header.topic)}"` };
  }
  if (header.messageType === "") return { ok: false, reason: "empty messageType" };
  if (header.groupId === "") return { ok: false, reason: "empty groupId" };
  const nowSec = Math.floor(nowMs / 1000);
  let expiredSec = header.expiredTime;
  if (expiredSec > 0 && expiredSec < nowSec) {
    return { ok: false, reason: `expired message (expiredTime ${expiredSec} < now ${nowSec})` };
  }
  if (expiredSec <= 0 || expiredSec > nowSec + MAX_EXPIRY_SECONDS) expiredSec = nowSec + MAX_EXPIRY_SECONDS;
  const deliverLimit =
    header.deliverLimit <= 0 || header.deliverLimit > MAX_DELIVER_LIMIT
      ? MAX_DELIVER_LIMIT
      : header.deliverLimit;
  const createdAt =
    header.createTime !== undefined && header.createTime > 0 ? header.createTime * 1000 : nowMs;
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
    },
  };
}

function truncate(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}...` : s;
}
