/**
 * A publish record for store tests: a fresh message id, stored at `createdAt`, expiring an hour
 * later, owed (unclaimed) to `groups`.
 */
import { randomBytes } from "node:crypto";
import type { PublishRecord } from "../../src/store/messages.js";

export function publishRecord(
  createdAt: Date,
  groups: string[],
  over: Partial<PublishRecord> = {},
): PublishRecord {
  return {
    messageId: randomBytes(16).toString("hex"),
    topic: "trade",
    messageType: "pay",
    groupId: "p",
    commit: true,
    expiresAt: new Date(createdAt.getTime() + 3600_000),
    deliverLimit: 100,
    createdAt,
    properties: [],
    snappy: false,
    bodyIsString: true,
    body: Buffer.from("hello"),
    deliveries: groups.map((groupId) => ({ groupId, claimedBy: null })),
    ...over,
  };
}
