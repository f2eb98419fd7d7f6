/**
 * An ack, a lease renewal or a release that waits for a delivery's row lock while another
 * transaction updates the row (a lease renewal: a new row version) must act on the updated row
 * once that transaction commits. A form that looked rows up, locked them and then changed them by
 * ctid missed such rows (the new version is not in the statement's snapshot): its acks ended
 * nothing and the deliveries were pushed again when their leases lapsed (58 duplicates in 100 s at
 * 2 x 2,000 msg/s).
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensurePartitions } from "../../src/store/db.js";
import { ackDeliveries, releaseDeliveries, renewLeases } from "../../src/store/deliveries.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

describe("store: outcomes waiting on a row another transaction updates", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
  });
  afterAll(async () => {
    await db.drop();
  });

  /** One delivery of group g claimed by node-a (epoch 1); its message pk. */
  const held = async (): Promise<number> => {
    const now = new Date();
    const [r] = await insertPublishBatch(db.pool, [publishRecord(now, ["g"])], {
      now,
      nodeId: "t",
      leaseUntil: new Date(now.getTime() + 30_000),
      firstTxCheckAt: now,
    });
    await db.pool.query(
      "UPDATE deliveries SET claimed_by = 'node-a', lease_until = now() + interval '30 s', claim_epoch = 1 WHERE message_pk = $1",
      [r!.pk],
    );
    return r!.pk!;
  };

  /** Run `outcome` while another transaction holds the row with an update, then commit that. */
  const whileUpdated = async <T>(pk: number, outcome: () => Promise<T>): Promise<T> => {
    const other: pg.PoolClient = await db.pool.connect();
    try {
      await other.query("BEGIN");
      await other.query("UPDATE deliveries SET lease_until = now() + interval '60 s' WHERE message_pk = $1", [
        pk,
      ]);
      const running = outcome();
      // The outcome's statement is waiting for the row lock by now.
      await new Promise((r) => setTimeout(r, 300));
      await other.query("COMMIT");
      return await running;
    } finally {
      other.release();
    }
  };

  const row = async (pk: number) =>
    (await db.pool.query("SELECT claimed_by, lease_until FROM deliveries WHERE message_pk = $1", [pk]))
      .rows[0];

  it("an ack deletes the delivery", async () => {
    const pk = await held();
    const now = new Date();
    const result = await whileUpdated(pk, () =>
      ackDeliveries(
        db.pool,
        [{ messagePk: pk, groupId: "g", attempt: 1, pushedAt: now, ackedAt: now }],
        "node-a",
      ),
    );
    expect(result.ended).toBe(1);
    expect(await row(pk)).toBeUndefined();
  });

  it("a release frees the claim", async () => {
    const pk = await held();
    const n = await whileUpdated(pk, () =>
      releaseDeliveries(db.pool, [{ messagePk: pk, groupId: "g", claimEpoch: 1 }]),
    );
    expect(n).toBe(1);
    expect((await row(pk)).claimed_by).toBeNull();
  });

  it("a lease renewal skips the locked row (SKIP LOCKED) and renews it the next time", async () => {
    const pk = await held();
    const until = new Date(Date.now() + 120_000);
    const renew = () =>
      renewLeases(db.pool, "node-a", [{ messagePk: pk, groupId: "g", claimEpoch: 1 }], until);
    expect(await whileUpdated(pk, renew)).toBe(0);
    expect(await renew()).toBe(1);
    expect(new Date((await row(pk)).lease_until).getTime()).toBe(until.getTime());
  });
});
