/**
 * kiteq-pg specifics of the load: producer and consumer connections through the client SDK, and
 * the bench body, which carries the send time (float64 ms, nowMs clock) and a sequence number.
 */

import { randomBytes } from "node:crypto";
import type pg from "pg";
import { BindType, createBinding, KITEQ_MAX_WATERMARK } from "../binding/binding.js";
import { buildHeader, KiteqConnection } from "../client/connection.js";
import type { Header } from "../protocol/messages.js";
import { upsertBinding } from "../store/bindings.js";
import type { PublishRecord } from "../store/messages.js";
import { nowMs } from "./stats.js";

/** The group the bench's producers publish as. */
export const PRODUCER_GROUP = "bench-producer";
/** messageType of every bench message. */
export const MESSAGE_TYPE = "bench";
/** Smallest body: send time + sequence number. */
export const MIN_BODY = 16;

/** A body of `size` bytes (at least MIN_BODY) carrying `sentAt` and `seq`. */
export function benchBody(size: number, sentAt: number, seq: number): Buffer {
  const b = Buffer.alloc(Math.max(MIN_BODY, size), 0x78);
  b.writeDoubleLE(sentAt, 0);
  b.writeDoubleLE(seq, 8);
  return b;
}

/** What benchBody wrote (NaN for a foreign body). */
export function readBenchBody(body: Buffer | string): { sentAt: number; seq: number } {
  if (typeof body === "string" || body.length < MIN_BODY) return { sentAt: Number.NaN, seq: Number.NaN };
  return { sentAt: body.readDoubleLE(0), seq: body.readDoubleLE(8) };
}

/** A header for a bench message on `topic` (fresh messageId). */
export function benchHeader(topic: string): Header {
  return buildHeader({ topic, messageType: MESSAGE_TYPE, groupId: PRODUCER_GROUP });
}

/** Open `n` connections as `groupId` (no heartbeat: runs are short). */
export async function connectMany(
  port: number,
  n: number,
  groupId = PRODUCER_GROUP,
): Promise<KiteqConnection[]> {
  return Promise.all(
    Array.from({ length: n }, () =>
      KiteqConnection.connect({ host: "127.0.0.1", port, groupId, heartbeatMs: 0, timeoutMs: 60_000 }),
    ),
  );
}

/**
 * Open `n` connections as `groupId` spread round-robin over `ports` (connection i on node
 * i mod ports.length), so the caller can tell a connection's node from its index.
 */
export async function connectSpread(
  ports: readonly number[],
  n: number,
  groupId = PRODUCER_GROUP,
): Promise<KiteqConnection[]> {
  const perPort = await Promise.all(
    ports.map((port, p) => connectMany(port, Math.ceil(Math.max(0, n - p) / ports.length), groupId)),
  );
  return Array.from({ length: n }, (_, i) => perPort[i % ports.length]![Math.floor(i / ports.length)]!);
}

/** Publish one bench message and throw unless the broker stored it. */
export async function publishBench(
  conn: KiteqConnection,
  topic: string,
  bodySize: number,
  sentAt: number,
  seq: number,
): Promise<void> {
  const ack = await conn.publish(benchHeader(topic), benchBody(bodySize, sentAt, seq));
  if (!ack.status) throw new Error(`publish refused: ${ack.feedback}`);
}

/**
 * Bind persistent `groupId` to every bench message of `topic`, at KiteQ's highest watermark
 * (6,000/s) unless told otherwise (a higher one needs the broker's --max-watermark 0).
 */
export async function bindBenchGroup(
  pool: pg.Pool,
  groupId: string,
  topic: string,
  watermark: number = KITEQ_MAX_WATERMARK,
): Promise<void> {
  await upsertBinding(
    pool,
    createBinding({
      groupId,
      topic,
      messageType: MESSAGE_TYPE,
      bindType: BindType.Direct,
      watermark,
      persistent: true,
    }),
    "cli",
    new Date(),
  );
}

/** A consumer connection of `groupId` that acks true at once and reports each push. */
export async function benchConsumer(
  port: number,
  groupId: string,
  onSeen: (seq: number, sentAt: number, seenAt: number) => void,
): Promise<KiteqConnection> {
  // The handler goes in with connect(): the first push may come in the handshake reply's chunk.
  return KiteqConnection.connect({
    host: "127.0.0.1",
    port,
    groupId,
    heartbeatMs: 0,
    timeoutMs: 60_000,
    onMessage: (m) => {
      const seenAt = nowMs();
      const { sentAt, seq } = readBenchBody(m.body);
      onSeen(seq, sentAt, seenAt);
      return true;
    },
  });
}

/** Close every connection. */
export function closeAll(conns: readonly KiteqConnection[]): void {
  for (const c of conns) c.close();
}

/**
 * A message as the publish statement stores it, for the database-only references (no broker):
 * a fresh id, `body`, expiring an hour after `now`, owed to `groups` (unclaimed).
 */
export function storedBenchRecord(
  now: Date,
  topic: string,
  body: Buffer,
  groups: readonly string[] = [],
): PublishRecord {
  return {
    messageId: randomBytes(16).toString("hex"),
    topic,
    messageType: MESSAGE_TYPE,
    groupId: "bench-db-only",
    commit: true,
    expiresAt: new Date(now.getTime() + 3600_000),
    deliverLimit: 100,
    createdAt: now,
    properties: [],
    snappy: false,
    bodyIsString: false,
    body,
    deliveries: groups.map((groupId) => ({ groupId, claimedBy: null })),
  };
}
