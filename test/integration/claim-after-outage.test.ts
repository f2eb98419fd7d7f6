/**
 * Claims just after a shard's outage (a walkthrough stopped one shard of two for 53 s under a
 * draining backlog: within 20 ms of its return one node claimed 1,875 deliveries "another node
 * held", and 995 messages whose pushes were acked while the shard was down were pushed again).
 * claimDueDeliveries' leasesLapsedBefore leaves another claimer's rows whose lease ran out after
 * that time (during the outage) to their holder; rows never claimed, and leases that ran out before
 * it, are claimed as ever.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensurePartitions } from "../../src/store/db.js";
import { claimDueDeliveries } from "../../src/store/deliveries.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const t0 = new Date("2026-11-26T10:00:00.000Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

describe("store: claims after an outage", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, t0);
  });
  afterAll(async () => {
    await db.drop();
  });

  const claim = (claimer: string, nowMs: number, leasesLapsedBefore?: Date) =>
    claimDueDeliveries(db.pool, {
      groups: ["g"],
      limits: [100],
      now: at(nowMs),
      claimer,
      leaseUntil: at(nowMs + 5000),
      ...(leasesLapsedBefore === undefined ? {} : { leasesLapsedBefore }),
    });

  it("leaves claims whose lease ran out during the outage to their holder", async () => {
    // Two messages claimed by node-a at t0 (lease to t0+5 s); the outage is from t0+2 s to t0+60 s.
    const held = [publishRecord(t0, ["g"]), publishRecord(t0, ["g"])];
    await insertPublishBatch(db.pool, held, { now: t0, nodeId: "t", leaseUntil: t0, firstTxCheckAt: t0 });
    expect(await claim("node-a", 0)).toHaveLength(2);
    // One whose lease ran out before the outage (claimed at t0-10 s by node-c, lease to t0-5 s).
    const stale = publishRecord(at(-10_000), ["g"]);
    await insertPublishBatch(db.pool, [stale], {
      now: at(-10_000),
      nodeId: "t",
      leaseUntil: at(-10_000),
      firstTxCheckAt: at(-10_000),
    });
    await db.pool.query(
      "UPDATE deliveries SET claimed_by = 'node-c', lease_until = $1 WHERE message_pk = (SELECT message_pk FROM message_ids WHERE message_id = $2)",
      [at(-5000), stale.messageId],
    );
    // And one never claimed.
    const fresh = publishRecord(at(1000), ["g"]);
    await insertPublishBatch(db.pool, [fresh], {
      now: at(1000),
      nodeId: "t",
      leaseUntil: at(1000),
      firstTxCheckAt: at(1000),
    });

    // node-b, right after the return: the fresh one and the stale one, not node-a's two.
    const first = await claim("node-b", 60_100, at(2000));
    // Before: all four (node-a's acks of its two were still on the way: pushed twice).
    expect(first.map((r) => r.messageId).sort()).toEqual([fresh.messageId, stale.messageId].sort());
    // After the grace (no cutoff given; node-b's own lease still runs): node-a's two, whose holder
    // wrote nothing meanwhile.
    const later = await claim("node-b", 64_000);
    expect(later.map((r) => r.messageId).sort()).toEqual(held.map((r) => r.messageId).sort());
  });
});
