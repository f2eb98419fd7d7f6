import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BROKER_POOL_SETTINGS, createPool, ensurePartitions } from "../../src/store/db.js";
import {
  ACK_AFTER_END,
  ACK_AFTER_END_SQL,
  ACK_DELIVERIES,
  ackAfterEnd,
  ackDeliveries,
  BACKGROUND_BATCH,
  claimDueDeliveries,
  deliveryKey,
  expireDeliveries,
  NACK_AFTER_END,
  nackDeliveries,
  PUSH_AFTER_END,
  RENEW_BATCH,
  releaseDeliveries,
  renewHeldLeases,
  renewLeases,
  replayRange,
} from "../../src/store/deliveries.js";
import { deadLetters } from "../../src/store/history.js";
import { declareClaimerDead } from "../../src/store/liveness.js";
import { insertPublishBatch, type PublishRecord } from "../../src/store/messages.js";
import { createTestDatabase, interceptStatements, lockWaiters, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const t0 = new Date("2026-11-26T10:00:00.000Z");

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Actual Loops"?: number;
  Plans?: PlanNode[];
}
/** A plan node and every node under it. */
const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)];
const at = (ms: number) => new Date(t0.getTime() + ms);

const record = (groups: string[], over: Partial<PublishRecord> = {}): PublishRecord =>
  publishRecord(t0, groups, over);

describe("store: deliveries", () => {
  let db: TestDatabase;
  const publish = (recs: PublishRecord[]) =>
    insertPublishBatch(db.pool, recs, { now: t0, nodeId: "n", leaseUntil: at(30_000), firstTxCheckAt: t0 });
  const claim = (groups: string[], limits: number[], now: Date, claimer = "A/1") =>
    claimDueDeliveries(db.pool, {
      groups,
      limits,
      now,
      claimer,
      leaseUntil: new Date(now.getTime() + 30_000),
    });

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, t0);
  });
  afterAll(async () => db.drop());

  it("claims due deliveries per group up to each limit, with the message, bumping the epoch", async () => {
    await publish([record(["g1", "g2"]), record(["g1"]), record(["g1"])]);
    const rows = await claim(["g1", "g2"], [2, 5], at(1));
    expect(rows.filter((r) => r.groupId === "g1")).toHaveLength(2);
    expect(rows.filter((r) => r.groupId === "g2")).toHaveLength(1);
    expect(rows[0]).toMatchObject({ claimEpoch: 1, attempts: 0, topic: "trade", bodyIsString: true });
    expect(rows[0]!.body.toString()).toBe("hello");
    // Claimed rows are not claimable again while the lease holds, by anyone.
    const again = await claim(["g1", "g2"], [10, 10], at(2), "B/1");
    expect(again).toHaveLength(1);
    // After the lease, another node takes them over with a new epoch.
    const takeover = await claim(["g1", "g2"], [10, 10], at(40_000), "B/1");
    expect(takeover.map((r) => r.claimEpoch).sort()).toEqual([2, 2, 2, 2]);
  });

  it("fences nacks by epoch, and dead-letters at the limit; acks end deliveries whatever the epoch", async () => {
    const [r] = await publish([record(["f1"], { deliverLimit: 2 })]);
    const [c1] = await claim(["f1"], [1], at(1));
    expect(c1!.claimEpoch).toBe(1);
    const stale = {
      messagePk: r!.pk!,
      groupId: "f1",
      claimEpoch: 0,
      attempt: 1,
      pushedAt: at(1),
      failedAt: at(2),
      nextAttemptAt: at(2),
      deadLetter: false,
      reason: "x",
    };
    // A stale claim's failed push changes nothing, but it happened: both rows are written, saying so.
    expect(await nackDeliveries(db.pool, [stale], "n")).toEqual({ events: 2, deadLettered: new Set() });
    expect(await claim(["f1"], [1], at(2))).toHaveLength(0); // still claimed, attempts unchanged
    const staleRows = await db.pool.query<{ kind: string; detail: string | null }>(
      "SELECT kind::text, detail FROM message_events WHERE message_pk = $1 AND group_id = 'f1' ORDER BY at, kind",
      [r!.pk!],
    );
    expect(staleRows.rows).toEqual([
      { kind: "delivered", detail: null },
      { kind: "nacked", detail: `x${NACK_AFTER_END}` },
    ]);
    expect(await nackDeliveries(db.pool, [{ ...stale, claimEpoch: 1 }], "n")).toEqual({
      events: 2,
      deadLettered: new Set(),
    });
    const [c2] = await claim(["f1"], [1], at(3));
    expect(c2).toMatchObject({ claimEpoch: 2, attempts: 1 });
    const dead = { ...stale, claimEpoch: 2, attempt: 2, deadLetter: true };
    expect(await nackDeliveries(db.pool, [dead], "n")).toEqual({
      events: 3,
      deadLettered: new Set([deliveryKey(dead)]),
    });
    // Again (a retried batch, a second node's push of the same claim): it ended nothing, so it
    // dead-lettered nothing, and the group's dead-letter count must not grow by it.
    expect(await nackDeliveries(db.pool, [dead], "n")).toEqual({ events: 2, deadLettered: new Set() });
    expect(await claim(["f1"], [1], at(100_000))).toHaveLength(0);
    const [r2] = await publish([record(["f2"])]);
    await claim(["f2"], [1], at(1));
    expect(
      await ackDeliveries(
        db.pool,
        [{ messagePk: r2!.pk!, groupId: "f2", attempt: 1, pushedAt: at(1), ackedAt: at(2) }],
        "n",
      ),
    ).toEqual({ ended: 1, lateEnded: new Set() });
    expect(
      await ackDeliveries(
        db.pool,
        [{ messagePk: r2!.pk!, groupId: "f2", attempt: 1, pushedAt: at(1), ackedAt: at(2) }],
        "n",
      ),
    ).toEqual({ ended: 0, lateEnded: new Set() });
    // That second push was received: its row says it was answered after the delivery ended.
    const pushes = await db.pool.query<{ kind: string; detail: string | null }>(
      "SELECT kind::text, detail FROM message_events WHERE message_pk = $1 AND group_id = 'f2' ORDER BY kind::text, detail NULLS FIRST",
      [r2!.pk!],
    );
    expect(pushes.rows).toEqual([
      { kind: "acked", detail: null },
      { kind: "delivered", detail: PUSH_AFTER_END },
    ]);
    // A late ack (pushedAt null) of a delivery already ended: not in lateEnded (metrics count
    // only what the store applied).
    expect(
      await ackDeliveries(
        db.pool,
        [{ messagePk: r2!.pk!, groupId: "f2", attempt: 1, pushedAt: null, ackedAt: at(3) }],
        "n",
      ),
    ).toEqual({ ended: 0, lateEnded: new Set() });
  });

  it("an ack after the delivery was dead-lettered is recorded, and the message leaves the dead letters", async () => {
    const [r] = await publish([record(["la"], { deliverLimit: 1 })]);
    const [c] = await claim(["la"], [1], at(1));
    // The push timed out at the deliver limit: nacked and dead-lettered.
    await nackDeliveries(
      db.pool,
      [
        {
          messagePk: r!.pk!,
          groupId: "la",
          claimEpoch: c!.claimEpoch,
          attempt: 1,
          pushedAt: at(1),
          failedAt: at(5_001),
          nextAttemptAt: at(5_001),
          deadLetter: true,
          reason: "no ack within 5000 ms",
        },
      ],
      "n",
    );
    expect(await deadLetters(db.pool, "la", t0, at(60_000))).toHaveLength(1);
    // Its consumer acks 2 s later (inside the late-ack window): the group did process it.
    const late = { messagePk: r!.pk!, groupId: "la", attempt: 1, pushedAt: null, ackedAt: at(7_001) };
    // Not ended by it, but recorded after the end: /metrics counts it as acked.
    expect(await ackDeliveries(db.pool, [late], "n")).toEqual({
      ended: 0,
      lateEnded: new Set(),
      recordedAfterEnd: new Set([`${r!.pk} la`]),
    });
    const rows = async () =>
      (
        await db.pool.query<{ kind: string; detail: string | null }>(
          "SELECT kind::text, detail FROM message_events WHERE message_pk = $1 AND group_id = 'la' ORDER BY at, kind",
          [r!.pk!],
        )
      ).rows.map((e) => e.kind);
    // Before: delivered, nacked, dead_lettered, and nothing of the ack (listed as a dead letter,
    // a re-drive would have run it again).
    expect(await rows()).toEqual(["delivered", "nacked", "dead_lettered", "acked"]);
    const { rows: acked } = await db.pool.query(
      "SELECT detail FROM message_events WHERE message_pk = $1 AND group_id = 'la' AND kind = 'acked'",
      [r!.pk!],
    );
    expect(acked[0].detail).toBe(ACK_AFTER_END);
    expect(await deadLetters(db.pool, "la", t0, at(60_000))).toHaveLength(0);
    // A second late ack adds nothing (the delivery's last ending is that ack now).
    await ackDeliveries(db.pool, [{ ...late, ackedAt: at(8_000) }], "n");
    expect(await rows()).toHaveLength(4);
  });

  it("an ack waiting on the dead-lettering of its delivery is recorded after it, and the message leaves the dead letters", async () => {
    // The ack's statement waited for the nack's commit (the same delivery's row), then judged
    // the ending under its older snapshot, which had no dead_lettered row: nothing recorded, and
    // the message stayed a dead letter although its consumer had acked it.
    const [r] = await publish([record(["lr"], { deliverLimit: 1 })]);
    const [c] = await claim(["lr"], [1], at(1));
    const a = await db.pool.connect();
    try {
      await a.query("BEGIN");
      await nackDeliveries(
        a,
        [
          {
            messagePk: r!.pk!,
            groupId: "lr",
            claimEpoch: c!.claimEpoch,
            attempt: 1,
            pushedAt: at(1),
            failedAt: at(5_001),
            nextAttemptAt: at(5_001),
            deadLetter: true,
            reason: "no ack within 5000 ms",
          },
        ],
        "n",
      );
      const acking = ackDeliveries(
        db.pool,
        [{ messagePk: r!.pk!, groupId: "lr", attempt: 1, pushedAt: null, ackedAt: at(5_002) }],
        "n",
      );
      await expect.poll(() => lockWaiters(db.pool)).toBe(1);
      await a.query("COMMIT");
      expect(await acking).toEqual({
        ended: 0,
        lateEnded: new Set(),
        recordedAfterEnd: new Set([`${r!.pk} lr`]),
      });
    } finally {
      a.release();
    }
    expect(await deadLetters(db.pool, "lr", t0, at(60_000))).toHaveLength(0);
    const { rows } = await db.pool.query(
      "SELECT kind::text, detail FROM message_events WHERE message_pk = $1 AND group_id = 'lr' ORDER BY at, kind",
      [r!.pk!],
    );
    expect(rows.map((e) => [e.kind, e.detail])).toEqual([
      ["delivered", null],
      ["nacked", "no ack within 5000 ms"],
      ["dead_lettered", "deliver limit reached"],
      ["acked", ACK_AFTER_END],
    ]);
  });

  it("a failure of the after-end statement is returned, not thrown (a retry would record the pushes twice)", async () => {
    const [r] = await publish([record(["lf"])]);
    let calls = 0;
    // The acks' statements go through; the after-end statement fails.
    const flaky = interceptStatements(db.pool, (q, forward) => {
      if (q.text !== ACK_AFTER_END_SQL) return forward();
      calls++;
      return Promise.reject(new Error("connection lost"));
    });
    const acks = [
      { messagePk: r!.pk!, groupId: "lf", attempt: 1, pushedAt: at(1), ackedAt: at(2) },
      // Ends nothing: asked about after the batch.
      { messagePk: r!.pk!, groupId: "lf-none", attempt: 1, pushedAt: at(1), ackedAt: at(2) },
    ];
    const result = await ackDeliveries(flaky, acks, "n");
    expect(result.ended).toBe(1);
    expect(String(result.afterEndError)).toMatch(/connection lost/);
    expect(calls).toBe(1);
    // Handed back to be run again on their own (the outcome writer retries them).
    expect(result.afterEnd).toEqual([acks[1]]);
  });

  it("late acks after a dead-lettering: one row per message and group, after the ending, whatever the repeats and races", async () => {
    const [r] = await publish([record(["lt"], { deliverLimit: 1 })]);
    const [c] = await claim(["lt"], [1], at(1));
    await nackDeliveries(
      db.pool,
      [
        {
          messagePk: r!.pk!,
          groupId: "lt",
          claimEpoch: c!.claimEpoch,
          attempt: 1,
          pushedAt: at(1),
          failedAt: at(5_001),
          nextAttemptAt: at(5_001),
          deadLetter: true,
          reason: "no ack within 5000 ms",
        },
      ],
      "n",
    );
    // Its ack arrived before the dead-lettering (its write waited), twice (two pushes answered
    // late), and two writers judge it at once.
    const late = { messagePk: r!.pk!, groupId: "lt", attempt: 1, pushedAt: null, ackedAt: at(3_000) };
    const a = await db.pool.connect();
    try {
      await a.query("BEGIN");
      await ackAfterEnd(a, [late, { ...late, ackedAt: at(3_500) }], "n");
      const racing = ackAfterEnd(db.pool, [late], "n");
      await expect.poll(() => lockWaiters(db.pool)).toBe(1);
      await a.query("COMMIT");
      await racing;
    } finally {
      a.release();
    }
    // Run again (a retry of a write that did commit): nothing more.
    await ackAfterEnd(db.pool, [late], "n");
    const { rows } = await db.pool.query(
      `SELECT kind::text, detail, extract(epoch FROM at - $2::timestamptz) * 1000 AS ms FROM message_events
        WHERE message_pk = $1 AND group_id = 'lt' ORDER BY at, kind`,
      [r!.pk!, t0],
    );
    // Before: an acked row per late ack and per writer (three here), each at its arrival, before
    // the dead_lettered row it claims to follow (and explain read the message as dead).
    expect(rows.map((e) => [e.kind, Number(e.ms)])).toEqual([
      ["delivered", 1],
      ["nacked", 5_001],
      ["dead_lettered", 5_001.001],
      ["acked", 5_001.002],
    ]);
    expect(rows[3].detail).toBe(ACK_AFTER_END);
    expect(await deadLetters(db.pool, "lt", t0, at(60_000))).toHaveLength(0);
  });

  it("a batch of acks that end their deliveries reads none of their history (the late-ack check is for the others)", async () => {
    const recs = Array.from({ length: 200 }, () => record(["lp"]));
    const stored = await publish(recs);
    const values = [
      stored.map((r) => r.pk!),
      stored.map(() => "lp"),
      stored.map(() => 1),
      stored.map(() => t0.getTime() / 1000),
      stored.map(() => t0.getTime() / 1000 + 0.01),
      "n",
    ];
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      const { rows } = await client.query({
        text: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${ACK_DELIVERIES}`,
        values,
      });
      const plan = (rows[0]["QUERY PLAN"] as { Plan: PlanNode }[])[0]!.Plan;
      // Before: every ack of the batch was filtered through the probe of its message's events
      // (34 buffers an ack over the day partitions) before the anti-join with the ended ones.
      const historyReads = nodes(plan).filter(
        (n) => /^message_events/.test(n["Relation Name"] ?? "") && n["Node Type"] !== "ModifyTable",
      );
      expect(historyReads.map((n) => n["Actual Loops"])).toEqual(historyReads.map(() => 0));
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  });

  it("renews a large held set in statements of RENEW_BATCH rows; a failed one costs only its rows", async () => {
    // A helper's walkthrough: 40,000 held deliveries renewed in one UPDATE ran to its 30 s
    // statement timeout under load, holding every row lock meanwhile.
    const n = 2 * RENEW_BATCH + 500;
    const stored = await publish(Array.from({ length: n }, () => record(["lb"])));
    const claimed = await claim(["lb"], [n], at(1), "A/1");
    expect(claimed).toHaveLength(n);
    const items = claimed.map((c) => ({ messagePk: c.messagePk, groupId: "lb", claimEpoch: c.claimEpoch }));
    const sizes: number[] = [];
    let failOn = 0;
    // Each renewal statement's lookups (its lock statement), by the keys it was given.
    const counting = interceptStatements(db.pool, (q, forward) => {
      if (!q.name?.startsWith("lock_deliveries")) return forward();
      sizes.push((q.values![0] as string).split(",").length);
      return sizes.length === failOn ? Promise.reject(new Error("deadlock detected")) : forward();
    });
    expect((await renewHeldLeases(counting, "A/1", items, at(60_000))).size).toBe(n);
    expect(sizes).toEqual([RENEW_BATCH, RENEW_BATCH, 500]);
    sizes.length = 0;
    failOn = 2;
    const errors: unknown[] = [];
    const renewed = await renewHeldLeases(counting, "A/1", items, at(90_000), (err) => errors.push(err));
    expect(renewed.size).toBe(n - RENEW_BATCH);
    expect(errors.map(String)).toEqual(["Error: deadlock detected"]);
    sizes.length = 0;
    await expect(renewHeldLeases(counting, "A/1", items, at(90_000))).rejects.toThrow(/deadlock/);
    expect(stored).toHaveLength(n);
  });

  it("renews only leases still held under the same epoch", async () => {
    const [r] = await publish([record(["l1"])]);
    const [c] = await claim(["l1"], [1], at(1), "A/1");
    const item = { messagePk: r!.pk!, groupId: "l1", claimEpoch: c!.claimEpoch };
    expect(await renewLeases(db.pool, "A/1", [item], at(60_000))).toBe(1);
    expect(await renewLeases(db.pool, "A/1", [{ ...item, claimEpoch: 9 }], at(60_000))).toBe(0);
    expect(await claim(["l1"], [1], at(40_000), "B/1")).toHaveLength(0);
    expect(await renewLeases(db.pool, "A/1", [item], at(60_000))).toBe(1);
  });

  it("lease renewals and releases lock rows in the outcome batches' order: no deadlock with them", async () => {
    // A connection locking two rows in key order, as an ack batch does, beside a renewal (then a
    // release) given them in the other order. Before, the renewal locked the second row first and
    // then waited for the first: a deadlock, one of the two statements failed.
    const recs = await publish([record(["dl1"]), record(["dl1"])]);
    const claimed = await claim(["dl1"], [2], at(1), "A/1");
    expect(claimed).toHaveLength(2);
    const items = claimed
      .map((c) => ({ messagePk: c.messagePk, groupId: "dl1", claimEpoch: c.claimEpoch }))
      .sort((a, b) => b.messagePk - a.messagePk);
    expect(recs).toHaveLength(2);
    // The plan of a large table (an index probe per input row, in input order), not a two-row
    // table's hash join.
    const pool = createPool(db.url, {
      max: 2,
      settings: { ...BROKER_POOL_SETTINGS, enable_hashjoin: "off", enable_mergejoin: "off" },
    });
    const ack = await pool.connect();
    try {
      for (const write of [
        () => renewLeases(pool, "A/1", items, at(60_000)),
        () => releaseDeliveries(pool, items),
      ]) {
        await ack.query("BEGIN");
        const [low, high] = [items[1]!, items[0]!];
        const lock = (pk: number) =>
          ack.query("UPDATE deliveries SET attempts = attempts WHERE message_pk = $1 AND group_id = 'dl1'", [
            pk,
          ]);
        await lock(low.messagePk);
        const other = write();
        await new Promise((r) => setTimeout(r, 300));
        await lock(high.messagePk);
        await ack.query("COMMIT");
        await other;
      }
    } finally {
      await ack.query("ROLLBACK").catch(() => undefined);
      ack.release();
      await pool.end();
    }
  });

  it("a lease renewal skips the rows an outcome batch holds locked instead of waiting: no deadlock in any join order", async () => {
    // A helper's load run: an ack batch (hash join) locked rows in another order than its input,
    // a renewal waited for one while holding another the batch wanted next, and PostgreSQL ended
    // one of them a second later (40P01). The renewal now never waits.
    await publish([record(["dl2"]), record(["dl2"])]);
    const claimed = await claim(["dl2"], [2], at(1), "B/1");
    expect(claimed).toHaveLength(2);
    const items = claimed.map((c) => ({ messagePk: c.messagePk, groupId: "dl2", claimEpoch: c.claimEpoch }));
    const [low, high] = [...items].sort((a, b) => a.messagePk - b.messagePk);
    const ack = await db.pool.connect();
    try {
      await ack.query("BEGIN");
      // The batch has the higher row locked (deleting it) and goes for the lower one next.
      await ack.query("DELETE FROM deliveries WHERE message_pk = $1 AND group_id = 'dl2'", [high!.messagePk]);
      const renewal = renewHeldLeases(db.pool, "B/1", items, at(60_000));
      const waited = await Promise.race([
        renewal.then(() => false),
        new Promise<boolean>((r) => setTimeout(() => r(true), 2_000)),
      ]);
      expect(waited).toBe(false);
      // Only the row that was free; the locked one is the batch's to end.
      expect(await renewal).toEqual(new Set([deliveryKey(low!)]));
      await ack.query("DELETE FROM deliveries WHERE message_pk = $1 AND group_id = 'dl2'", [low!.messagePk]);
      await ack.query("COMMIT");
    } finally {
      await ack.query("ROLLBACK").catch(() => undefined);
      ack.release();
    }
  });

  it("takes over a dead claimer's rows for one window, not its own, and counts them", async () => {
    await publish([record(["k1"]), record(["k1"])]);
    expect(await claim(["k1"], [1], at(1), "D/1")).toHaveLength(1);
    // Held under a live lease: nobody else may claim it.
    expect(await claim(["k1"], [5], at(2), "E/1")).toHaveLength(1); // the other, unclaimed row
    expect(await claim(["k1"], [5], at(3), "F/1")).toHaveLength(0);
    // Declared for one lease from now: every lease it set before is within the window.
    expect(await declareClaimerDead(db.pool, "D/1", at(3), at(30_003))).toEqual({ checks: 0 });
    // The dead claimer itself (a run wrongly declared dead) does not re-claim its own rows.
    expect(await claim(["k1"], [5], at(4), "D/1")).toHaveLength(0);
    const tally = { takenOver: 0 };
    const taken = await claimDueDeliveries(db.pool, {
      groups: ["k1"],
      limits: [5],
      now: at(4),
      claimer: "F/1",
      leaseUntil: at(30_000),
      tally,
    });
    expect(taken).toHaveLength(1);
    expect(taken[0]!.claimEpoch).toBe(2);
    expect(tally.takenOver).toBe(1);
    // E/1 is declared dead too, but after the window its rows wait for their lease as before.
    await declareClaimerDead(db.pool, "E/1", at(5), at(6));
    expect(await claim(["k1"], [5], at(7), "F/1")).toHaveLength(0);
    expect(await claim(["k1"], [5], at(31_000), "F/1")).toHaveLength(2);
    // Each taken row is in the history: its earlier holder may have pushed it already.
    const { rows } = await db.pool.query(
      `SELECT detail, node_id, at FROM message_events WHERE group_id = 'k1' AND kind = 'taken_over'
        ORDER BY at, detail`,
    );
    expect(rows.map((r) => [r.detail, r.node_id, r.at.getTime()])).toEqual([
      ["from D/1 (declared dead)", "F/1", at(4).getTime()],
      ["from E/1 (its lease ran out)", "F/1", at(31_000).getTime()],
      ["from F/1 (its lease ran out)", "F/1", at(31_000).getTime()],
    ]);
  });

  it("a run declared dead while alive keeps what it claims or renews after the declaration", async () => {
    const [r1, r2] = await publish([record(["w1"]), record(["w1"])]);
    const [held] = await claim(["w1"], [1], at(1), "L/1");
    await declareClaimerDead(db.pool, "L/1", at(2), at(30_002));
    // Claimed after the declaration (lease beyond its window): not taken over.
    const [later] = await claim(["w1"], [1], at(3), "L/1");
    expect(later).toBeDefined();
    // Renewed after it: not taken over either.
    expect(
      await renewLeases(
        db.pool,
        "L/1",
        [{ messagePk: held!.messagePk, groupId: "w1", claimEpoch: held!.claimEpoch }],
        at(30_004),
      ),
    ).toBe(1);
    expect(await claim(["w1"], [5], at(5), "M/1")).toHaveLength(0);
    expect([r1!.pk, r2!.pk]).toContain(later!.messagePk);
  });

  it("a claim is a HOT update: no index of deliveries names claimed_by or lease_until", async () => {
    const { rows } = await db.pool.query(
      "SELECT indexdef FROM pg_indexes WHERE tablename = 'deliveries' AND (indexdef LIKE '%claimed_by%' OR indexdef LIKE '%lease_until%')",
    );
    expect(rows).toEqual([]);
    const { rows: opts } = await db.pool.query(
      "SELECT reloptions FROM pg_class WHERE relname = 'deliveries'",
    );
    expect(opts[0].reloptions).toContain("fillfactor=35");
  });

  it("expires deliveries past expiredTime with an expired event, and never claims them", async () => {
    await publish([record(["e1"], { expiresAt: at(1000) })]);
    expect(await claim(["e1"], [1], at(2000))).toHaveLength(0);
    expect(await expireDeliveries(db.pool, at(2000), "n", 100)).toBe(1);
    const { rows } = await db.pool.query("SELECT kind FROM message_events WHERE group_id = 'e1'");
    expect(rows).toEqual([{ kind: "expired" }]);
  });

  /** A replay of `topic` to `groupId` over [-1 s, +1 s), at +5 s. */
  const replayOf = (topic: string, groupId: string) => ({
    topic,
    groupId,
    since: at(-1000),
    until: at(1000),
    now: at(5000),
    expiresAt: at(3600_000),
    nodeId: "cli",
    reason: "test replay",
  });

  it("replays a time range of a topic to a group: committed messages only, once while owed", async () => {
    const recs = [
      record([], { topic: "replay" }),
      record([], { topic: "replay" }),
      record([], { topic: "replay", commit: false }),
      record([], { topic: "other" }),
    ];
    await publish(recs);
    const args = replayOf("replay", "r1");
    expect(await replayRange(db.pool, args)).toBe(2);
    expect(await replayRange(db.pool, args)).toBe(0);
    expect(await replayRange(db.pool, { ...args, since: at(1000), until: at(2000) })).toBe(0);
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM message_events WHERE group_id = 'r1' AND kind = 'redriven' AND detail = 'test replay'",
    );
    expect(rows[0].n).toBe(2);
    expect(await claim(["r1"], [10], at(6000))).toHaveLength(2);
  });

  it("replays only the message types the caller's matcher accepts, judged once per type", async () => {
    await publish(
      ["order", "orders", "order", "refund", "order.paid"].map((messageType) =>
        record([], { topic: "replay-types", messageType }),
      ),
    );
    const judged: string[] = [];
    // Go's \b (a word boundary; PostgreSQL's regex reads it as a backspace).
    const goRegexp = /\border\b/;
    const n = await replayRange(db.pool, {
      ...replayOf("replay-types", "r3"),
      matchesType: (type) => {
        judged.push(type);
        return goRegexp.test(type);
      },
    });
    expect(n).toBe(3);
    expect(judged.sort()).toEqual(["order", "order.paid", "orders", "refund"]);
    const { rows } = await db.pool.query(
      `SELECT m.message_type, count(*)::int AS n FROM deliveries d JOIN messages m ON m.id = d.message_pk
        WHERE d.group_id = 'r3' GROUP BY 1 ORDER BY 1`,
    );
    expect(rows).toEqual([
      { message_type: "order", n: 2 },
      { message_type: "order.paid", n: 1 },
    ]);
  });

  it("a replayed delayed message stays delayed until its kiteq.deliverAt", async () => {
    const due = at(60_000);
    await publish([
      record([], {
        topic: "replay-delayed",
        deliverAt: due,
        properties: [{ key: "kiteq.deliverAt", value: String(due.getTime()) }],
      }),
    ]);
    const n = await replayRange(db.pool, replayOf("replay-delayed", "r2"));
    expect(n).toBe(1);
    // Before: due at the replay (now), so pushed 55 s early.
    expect(await claim(["r2"], [10], at(6000))).toHaveLength(0);
    expect(await claim(["r2"], [10], at(60_000))).toHaveLength(1);
  });

  it("a replay stamps each batch with its own time: no instant of the group's history holds more than one batch", async () => {
    const n = BACKGROUND_BATCH * 2 + 500;
    for (let i = 0; i < n; i += 1000) {
      await publish(
        Array.from({ length: Math.min(1000, n - i) }, () => record([], { topic: "replay-many" })),
      );
    }
    const replayed = await replayRange(db.pool, replayOf("replay-many", "r3"));
    expect(replayed).toBe(n);
    // Before: all 10,500 `redriven` rows at one instant, and every page of the group's history
    // starting in it read all of them (1.5-2.4 s a page after a replay of 120,000).
    const { rows } = await db.pool.query(
      `SELECT at, count(*)::int AS n FROM message_events WHERE group_id = 'r3' AND kind = 'redriven'
        GROUP BY at ORDER BY at`,
    );
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...rows.map((r: { n: number }) => r.n))).toBeLessThanOrEqual(BACKGROUND_BATCH);
    expect(rows[0].at.getTime()).toBeGreaterThanOrEqual(at(5000).getTime());
  });
});
