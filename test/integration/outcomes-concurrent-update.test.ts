/**
 * An ack, a lease renewal or a release that waits for a delivery's row lock while another
 * transaction updates the row (a lease renewal: a new row version) must act on the updated row
 * once that transaction commits. A form that looked rows up, locked them and then changed them by
 * ctid missed such rows (the new version is not in the statement's snapshot): its acks ended
 * nothing and the deliveries were pushed again when their leases lapsed (58 duplicates in 100 s at
 * 2 x 2,000 msg/s). A claim (SKIP LOCKED: it never waits) can still lock a row's new version that
 * its own update cannot see: it must not say it took over what it did not claim.
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OutcomeWriter } from "../../src/delivery/outcomes.js";
import { silentLogger } from "../../src/log.js";
import { ensurePartitions } from "../../src/store/db.js";
import {
  ACK_DELIVERIES,
  ackDeliveries,
  claimDueDeliveries,
  releaseDeliveries,
  renewLeases,
} from "../../src/store/deliveries.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { createTestDatabase, interceptStatements, type TestDatabase } from "../support/db.js";
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

  /** One delivery of `group` claimed by node-a (epoch 1); its message pk. */
  const held = async (group = "g"): Promise<number> => {
    const now = new Date();
    const [r] = await insertPublishBatch(db.pool, [publishRecord(now, [group])], {
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

  it("a claim writes `taken_over` only for rows it claimed, not for a row another transaction changed after its snapshot", async () => {
    // Row 1 (due first) is held by a live claimer; row 2's lease ran out (a takeover). The claim's
    // connection sees a dead_claimers that pauses when read, which the claim does at row 1 only:
    // meanwhile another transaction changes row 2 and commits. The claim then locks row 2's new
    // version (SKIP LOCKED locks the latest version), which its own update, in the statement's
    // snapshot, cannot see: row 2 is not claimed this time, so nothing may say it was taken over.
    const live = await held("c");
    const lapsed = await held("c");
    await db.pool.query(
      `UPDATE deliveries SET next_attempt_at = now() - interval '2 s' WHERE message_pk = $1;`,
      [live],
    );
    await db.pool.query(
      `UPDATE deliveries SET claimed_by = 'node-b', lease_until = now() - interval '1 s',
              next_attempt_at = now() - interval '1 s' WHERE message_pk = $1`,
      [lapsed],
    );
    await db.pool.query(`
      CREATE SCHEMA IF NOT EXISTS paused;
      CREATE OR REPLACE FUNCTION paused.pause() RETURNS boolean LANGUAGE sql VOLATILE
        AS $$ SELECT pg_sleep(0.5); SELECT false $$;
      CREATE OR REPLACE VIEW paused.dead_claimers AS
        SELECT * FROM public.dead_claimers
        UNION ALL SELECT NULL::text, NULL::timestamptz, 'infinity'::timestamptz WHERE paused.pause();`);
    const claimer = await db.pool.connect();
    const other = await db.pool.connect();
    const takenOver = async () =>
      (
        await db.pool.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM message_events WHERE message_pk = $1 AND kind = 'taken_over'",
          [lapsed],
        )
      ).rows[0]!.n;
    const claim = () => {
      const now = new Date();
      return claimDueDeliveries(claimer, {
        groups: ["c"],
        limits: [10],
        now,
        claimer: "node-c",
        leaseUntil: new Date(now.getTime() + 30_000),
      });
    };
    try {
      await claimer.query("SET search_path = paused, public");
      const running = claim();
      await new Promise((r) => setTimeout(r, 200));
      await other.query("UPDATE deliveries SET attempts = attempts WHERE message_pk = $1", [lapsed]);
      const first = await running;
      expect(first.map((d) => d.messagePk)).toEqual([]);
      expect((await row(lapsed)).claimed_by).toBe("node-b");
      expect(await takenOver()).toBe(0);
      // The next claim takes it over, and says so once.
      const second = await claim();
      expect(second.map((d) => d.messagePk)).toEqual([lapsed]);
      expect((await row(lapsed)).claimed_by).toBe("node-c");
      expect(await takenOver()).toBe(1);
    } finally {
      await claimer.query("RESET search_path").catch(() => undefined);
      claimer.release();
      other.release();
    }
  });

  it("an ack batch whose second round fails retries only the acks the first round left", async () => {
    // The first round ends `plain` and leaves `raced` (changed while it waited); the second round
    // fails. Retried whole, the batch recorded `plain`'s push again, as answered after its end.
    const raced = await held();
    const plain = await held();
    let rounds = 0;
    const flaky = interceptStatements(db.pool, (q, forward) =>
      q.text === ACK_DELIVERIES && ++rounds === 2
        ? Promise.reject(Object.assign(new Error("terminating connection"), { code: "57P01" }))
        : forward(),
    );
    const writer = new OutcomeWriter(flaky, "node-a", silentLogger, 5);
    const now = new Date();
    const ack = (pk: number) =>
      new Promise<boolean>((resolve) =>
        writer.ack({ messagePk: pk, groupId: "g", attempt: 1, pushedAt: now, ackedAt: now }, resolve),
      );
    const done = await whileUpdated(raced, () => Promise.all([ack(raced), ack(plain)]));
    expect(done).toEqual([true, true]);
    await writer.drain();
    expect(rounds).toBe(3);
    for (const pk of [raced, plain]) {
      expect(await row(pk)).toBeUndefined();
      const { rows } = await db.pool.query(
        "SELECT kind::text, detail FROM message_events WHERE message_pk = $1 AND group_id = 'g' ORDER BY at, kind",
        [pk],
      );
      expect(rows).toEqual([{ kind: "acked", detail: null }]);
    }
  });
});
