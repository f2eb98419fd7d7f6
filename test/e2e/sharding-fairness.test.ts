/**
 * Fair rotation: shard 0 holds a backlog of 6,000 owed deliveries that a group drains at its
 * watermark (500/s, so ~12 s); messages owed in shard 1 meanwhile are claimed at the next claim
 * pass and delivered after what the group already holds (its prefetch, twice its watermark: ~2 s
 * at 500/s), not after shard 0's backlog.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHeader, type KiteqConnection } from "../../src/client/connection.js";
import { insertPublishBatch, type PublishRecord } from "../../src/store/messages.js";
import { shardOf } from "../../src/store/shard-hash.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const BACKLOG = 6000;
const WATERMARK = 500;

/** `n` records for group g whose ids hash to `shard` of 2. */
function recordsIn(shard: number, n: number, now: Date): PublishRecord[] {
  const out: PublishRecord[] = [];
  while (out.length < n) {
    const { messageId } = buildHeader({ topic: "t", messageType: "m", groupId: "p" });
    if (shardOf(messageId, 2) !== shard) continue;
    out.push(publishRecord(now, ["g"], { messageId, topic: "t", messageType: "m" }));
  }
  return out;
}

describe("e2e: claims rotate over the shards", () => {
  const shards: TestDatabase[] = [];
  let broker: BrokerProcess | undefined;
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 2; i++) shards.push(await createTestDatabase());
    await bind(shards[0]!.pool, { groupId: "g", topic: "t", messageType: "m", watermark: WATERMARK });
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    await broker?.kill();
    for (const s of shards) await s.drop();
  });

  it("a backlog in shard 0 does not starve shard 1", async () => {
    broker = await startBrokerProcess([
      "--db",
      shards.map((s) => s.url).join(" "),
      "--recover-seconds",
      "5",
      "--recieve-permits-per-second",
      "0",
    ]);
    const options = (now: Date) => ({ now, nodeId: "test", leaseUntil: now, firstTxCheckAt: now });
    const now = new Date();
    const backlog = recordsIn(0, BACKLOG, now);
    for (let i = 0; i < BACKLOG; i += 1000) {
      await insertPublishBatch(shards[0]!.pool, backlog.slice(i, i + 1000), options(now));
    }
    const consumer = await recordingConsumer(broker.port, "g");
    conns.push(consumer.conn);
    await waitFor(() => consumer.received.length >= 300, 10_000, "the backlog flowing");
    // Owed in shard 1 while shard 0 still owes thousands.
    const late = recordsIn(1, 20, new Date());
    const insertedAt = Date.now();
    await insertPublishBatch(shards[1]!.pool, late, options(new Date()));
    const ids = late.map((r) => r.messageId);
    await waitFor(
      () => ids.every((id) => consumer.ids().includes(id)),
      5000,
      "shard 1's messages delivered during shard 0's backlog",
    );
    const tookMs = Date.now() - insertedAt;
    const backlogLeft = BACKLOG - consumer.ids().filter((id) => shardOf(id, 2) === 0).length;
    console.log(
      `fairness: shard 1's 20 messages delivered ${tookMs} ms after they were owed, ${backlogLeft} of shard 0's backlog still owed`,
    );
    expect(backlogLeft).toBeGreaterThan(BACKLOG / 3);
    expect(tookMs).toBeLessThan(3500);
  }, 60_000);
});
