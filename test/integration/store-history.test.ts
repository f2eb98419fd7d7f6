import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensurePartitions, forgetMessageIdsBatch, pingStore } from "../../src/store/db.js";
import {
  ackDeliveries,
  claimDueDeliveries,
  countOwedDeliveries,
  nackDeliveries,
  redriveDelivery,
  replayRange,
} from "../../src/store/deliveries.js";
import { countDeadLetters, deadLetterPage } from "../../src/store/groups.js";
import {
  deadLetters,
  GROUP_HISTORY_SQL,
  type GroupHistoryPlace,
  groupHistory,
  groupHistoryRows,
  messageHistory,
} from "../../src/store/history.js";
import { insertPublishBatch, type PublishRecord } from "../../src/store/messages.js";
import { createTestDatabase, lockWaiters, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const t0 = new Date("2026-11-26T10:00:00.000Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

const record = (groups: string[], over: Partial<PublishRecord> = {}): PublishRecord =>
  publishRecord(t0, groups, { groupId: "producer", properties: [{ key: "k", value: "v" }], ...over });

describe("store: history queries", () => {
  let db: TestDatabase;

  const publish = async (rec: PublishRecord, now = t0) => {
    const [r] = await insertPublishBatch(db.pool, [rec], {
      now,
      nodeId: "n1",
      leaseUntil: at(30_000),
      firstTxCheckAt: now,
    });
    return r!.pk!;
  };
  const claim = async (groupId: string, now: Date) => {
    const rows = await claimDueDeliveries(db.pool, {
      groups: [groupId],
      limits: [10],
      now,
      claimer: "n1/1",
      leaseUntil: new Date(now.getTime() + 30_000),
    });
    return rows;
  };
  /** Claim and fail the group's one due delivery at `now`; dead-letter when `dead`. */
  const fail = async (groupId: string, now: Date, attempt: number, dead: boolean) => {
    const [c] = await claim(groupId, now);
    await nackDeliveries(
      db.pool,
      [
        {
          messagePk: c!.messagePk,
          groupId,
          claimEpoch: c!.claimEpoch,
          attempt,
          pushedAt: now,
          failedAt: now,
          nextAttemptAt: now,
          deadLetter: dead,
          reason: "consumer said false",
        },
      ],
      "n1",
    );
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, t0);
  });
  afterAll(async () => db.drop());

  it("messageHistory: every row of the message in order, ties in life-cycle order; null when unknown", async () => {
    const rec = record(["ga", "gb"]);
    const pk = await publish(rec);
    // ga: pushed and acked in the same millisecond as the publish (ties must still read in order).
    await ackDeliveries(
      db.pool,
      [{ messagePk: pk, groupId: "ga", attempt: 1, pushedAt: t0, ackedAt: t0 }],
      "n1",
    );
    // gb: fails once, then dead-lettered.
    await fail("gb", at(10), 1, false);
    await fail("gb", at(20), 2, true);

    const h = await messageHistory(db.pool, rec.messageId);
    expect(h).toMatchObject({
      messageId: rec.messageId,
      topic: "trade",
      messageType: "pay",
      publisherGroupId: "producer",
      commit: true,
      deliverLimit: 100,
      properties: [{ key: "k", value: "v" }],
      bodySize: 5,
    });
    expect(h!.createdAt.toISOString()).toBe(t0.toISOString());
    expect(h!.events.map((e) => [e.kind, e.groupId, e.attempt])).toEqual([
      ["received", null, null],
      ["delivered", "ga", 1],
      ["acked", "ga", 1],
      ["delivered", "gb", 1],
      ["nacked", "gb", 1],
      ["delivered", "gb", 2],
      ["nacked", "gb", 2],
      ["dead_lettered", "gb", 2],
    ]);
    expect(h!.events[4]).toMatchObject({ nodeId: "n1", detail: "consumer said false" });
    expect(await messageHistory(db.pool, randomBytes(16).toString("hex"))).toBeNull();
  });

  it("groupHistory: the group's rows in [since, until), other groups and times left out", async () => {
    const g = `gh-${randomBytes(3).toString("hex")}`;
    const a = record([g]);
    const b = record([g, "other"]);
    const pkA = await publish(a);
    const pkB = await publish(b);
    await ackDeliveries(
      db.pool,
      [{ messagePk: pkA, groupId: g, attempt: 1, pushedAt: at(100), ackedAt: at(150) }],
      "n1",
    );
    await ackDeliveries(
      db.pool,
      [
        { messagePk: pkB, groupId: g, attempt: 1, pushedAt: at(200), ackedAt: at(250) },
        { messagePk: pkB, groupId: "other", attempt: 1, pushedAt: at(210), ackedAt: at(220) },
      ],
      "n1",
    );

    const all = await groupHistory(db.pool, g, t0, at(1000));
    expect(all.map((e) => [e.kind, e.messageId])).toEqual([
      ["delivered", a.messageId],
      ["acked", a.messageId],
      ["delivered", b.messageId],
      ["acked", b.messageId],
    ]);
    expect(all[0]).toMatchObject({ topic: "trade", messageType: "pay", attempt: 1, nodeId: "n1" });
    expect(all[0]!.at.toISOString()).toBe(at(100).toISOString());
    // since is inclusive, until exclusive.
    const middle = await groupHistory(db.pool, g, at(150), at(250));
    expect(middle.map((e) => [e.kind, e.at.toISOString()])).toEqual([
      ["acked", at(150).toISOString()],
      ["delivered", at(200).toISOString()],
    ]);
    expect(await groupHistory(db.pool, g, t0, at(1000), 3)).toHaveLength(3);
    expect(await groupHistory(db.pool, g, at(1000), at(2000))).toEqual([]);
  });

  it("groupHistoryRows pages through changes of one instant after a place, each once, in order", async () => {
    // An ack batch's rows share one time: 60 pushes at one instant and their acks at another,
    // with changes before and after them. A page boundary inside an instant is the case.
    const g = `gp-${randomBytes(3).toString("hex")}`;
    const records = Array.from({ length: 60 }, () => record([g]));
    const pks: number[] = [];
    for (const r of records) pks.push(await publish(r));
    await ackDeliveries(
      db.pool,
      pks.slice(0, 2).map((pk, i) => ({
        messagePk: pk,
        groupId: g,
        attempt: 1,
        pushedAt: at(10 + i),
        ackedAt: at(20 + i),
      })),
      "n1",
    );
    await ackDeliveries(
      db.pool,
      pks
        .slice(2, 58)
        .map((pk) => ({ messagePk: pk, groupId: g, attempt: 1, pushedAt: at(100), ackedAt: at(300) })),
      "n1",
    );
    await ackDeliveries(
      db.pool,
      pks.slice(58).map((pk, i) => ({
        messagePk: pk,
        groupId: g,
        attempt: 1,
        pushedAt: at(400 + i),
        ackedAt: at(500 + i),
      })),
      "n1",
    );
    const key = (e: { kind: string; messageId: string | null; at: Date }) =>
      `${e.at.toISOString()} ${e.kind} ${e.messageId}`;
    const whole = (await groupHistory(db.pool, g, t0, at(1000), 1000)).map(key);
    expect(whole).toHaveLength(120);
    for (const limit of [1, 7, 56, 119]) {
      const paged: string[] = [];
      let after: GroupHistoryPlace | undefined;
      for (let page = 0; page < 200; page++) {
        const rows = await groupHistoryRows(db.pool, g, t0, at(1000), limit, after);
        paged.push(...rows.map((r) => key(r.event)));
        if (rows.length < limit) break;
        after = rows[rows.length - 1]!.place;
      }
      expect(paged, `limit ${limit}`).toEqual(whole);
    }
    // A place inside the range's own bounds: since stays the lower bound of what is read.
    const fromMiddle = await groupHistoryRows(db.pool, g, at(300), at(1000), 1000);
    expect(fromMiddle.map((r) => key(r.event))).toEqual(whole.filter((k) => k >= at(300).toISOString()));
  });

  it("groupHistory keeps a change whose message retention dropped (the message's day gone, the change's day kept)", async () => {
    // A message received late on one day and acked on the next: when retention drops the first
    // day, the ack's row stays in the kept day. Before, the group's history of that day hid it
    // (an inner join with the message), as it hid every change of a backlog consumed days later.
    const g = `gr-${randomBytes(3).toString("hex")}`;
    const recs = [record([g]), record([g])];
    const [gone, kept] = [await publish(recs[0]!), await publish(recs[1]!)];
    const nextDay = at(86_400_000);
    await ensurePartitions(db.pool, nextDay);
    await ackDeliveries(
      db.pool,
      [gone, kept].map((pk, i) => ({
        messagePk: pk,
        groupId: g,
        attempt: 1,
        pushedAt: new Date(nextDay.getTime() + i * 10),
        ackedAt: new Date(nextDay.getTime() + i * 10 + 5),
      })),
      "n1",
    );
    // What dropping the message's day does to it (the day holds other tests' rows: not dropped).
    await db.pool.query("DELETE FROM messages WHERE id = $1", [gone]);
    const rows = await groupHistoryRows(db.pool, g, nextDay, at(86_500_000));
    expect(rows.map((r) => [r.event.kind, r.event.messageId, r.event.topic])).toEqual([
      ["delivered", null, null],
      ["acked", null, null],
      ["delivered", recs[1]!.messageId, "trade"],
      ["acked", recs[1]!.messageId, "trade"],
    ]);
    // Paged one row at a time, each once, in the same order.
    const paged: (string | null)[] = [];
    let after: GroupHistoryPlace | undefined;
    for (let page = 0; page < 10; page++) {
      const one = await groupHistoryRows(db.pool, g, nextDay, at(86_500_000), 1, after);
      if (one.length === 0) break;
      paged.push(`${one[0]!.event.kind} ${one[0]!.event.messageId}`);
      after = one[0]!.place;
    }
    expect(paged).toEqual(rows.map((r) => `${r.event.kind} ${r.event.messageId}`));
  });

  it("an ack within a second of its push is one row that still reads as delivered + acked", async () => {
    const g = `gm-${randomBytes(3).toString("hex")}`;
    const quick = record([g]);
    const slow = record([g]);
    const late = record([g]);
    const pkQuick = await publish(quick);
    const pkSlow = await publish(slow);
    const pkLate = await publish(late);
    const ended = await ackDeliveries(
      db.pool,
      [
        // Pushed before 2000, acked after: the push is in [1000, 2000), the ack is not.
        { messagePk: pkQuick, groupId: g, attempt: 1, pushedAt: at(1900), ackedAt: at(2300) },
        { messagePk: pkSlow, groupId: g, attempt: 1, pushedAt: at(1000), ackedAt: at(2500) },
        // A late ack: its push's delivered row was written with the timeout's nack.
        { messagePk: pkLate, groupId: g, attempt: 1, pushedAt: null, ackedAt: at(1500) },
      ],
      "n1",
    );
    expect(ended).toEqual({ ended: 3, lateEnded: new Set([`${pkLate} ${g}`]) });
    const { rows } = await db.pool.query(
      `SELECT m.message_id, e.kind, e.at, e.delivered_at FROM message_events e JOIN messages m ON m.id = e.message_pk
        WHERE e.group_id = $1 ORDER BY e.at`,
      [g],
    );
    expect(rows.map((r) => [r.message_id, r.kind, r.delivered_at?.toISOString() ?? null])).toEqual([
      [slow.messageId, "delivered", null],
      [late.messageId, "acked", null],
      [quick.messageId, "acked", at(1900).toISOString()],
      [slow.messageId, "acked", null],
    ]);
    const changes = (since: number, until: number, limit?: number) =>
      groupHistory(db.pool, g, at(since), at(until), limit).then((es) =>
        es.map((e) => [e.kind, e.messageId, e.at.getTime() - t0.getTime()]),
      );
    expect(await changes(1000, 2000)).toEqual([
      ["delivered", slow.messageId, 1000],
      ["acked", late.messageId, 1500],
      ["delivered", quick.messageId, 1900],
    ]);
    expect(await changes(2000, 3000)).toEqual([
      ["acked", quick.messageId, 2300],
      ["acked", slow.messageId, 2500],
    ]);
    // The limit counts state changes, in time order, across a merged row.
    expect(await changes(1000, 3000, 3)).toEqual(await changes(1000, 2000));
    expect(await changes(1600, 3000, 1)).toEqual([["delivered", quick.messageId, 1900]]);
    const h = await messageHistory(db.pool, quick.messageId);
    expect(h!.events.map((e) => [e.kind, e.groupId, e.at.getTime() - t0.getTime()])).toEqual([
      ["received", null, 0],
      ["delivered", g, 1900],
      ["acked", g, 2300],
    ]);
  });

  it("deadLetters: dead-lettered in range and still dead; redriven or acked ones left out", async () => {
    const g = `gd-${randomBytes(3).toString("hex")}`;
    const early = record([g], { deliverLimit: 1 });
    await publish(early);
    await fail(g, at(1000), 1, true);
    const late = record([g], { deliverLimit: 1 });
    await publish(late);
    await fail(g, at(5000), 1, true);

    expect((await deadLetters(db.pool, g, t0, at(10_000))).map((d) => d.messageId)).toEqual([
      early.messageId,
      late.messageId,
    ]);
    const inRange = await deadLetters(db.pool, g, at(2000), at(10_000));
    expect(inRange).toEqual([
      {
        messageId: late.messageId,
        topic: "trade",
        messageType: "pay",
        at: expect.any(Date),
        attempt: 1,
        detail: "consumer said false",
      },
    ]);

    // Redriven: owed again, so no longer a dead letter.
    const redriven = await redriveDelivery(db.pool, {
      messageId: early.messageId,
      groupId: g,
      now: at(6000),
      expiresAt: at(3600_000),
      nodeId: "cli",
      reason: "test",
    });
    expect(redriven).toBe(true);
    expect((await deadLetters(db.pool, g, t0, at(10_000))).map((d) => d.messageId)).toEqual([late.messageId]);
    // Acked after the redrive: stays out even though its delivery row is gone.
    const [c] = await claim(g, at(7000));
    await ackDeliveries(
      db.pool,
      [{ messagePk: c!.messagePk, groupId: g, attempt: 1, pushedAt: at(7000), ackedAt: at(7001) }],
      "n1",
    );
    expect((await deadLetters(db.pool, g, t0, at(10_000))).map((d) => d.messageId)).toEqual([late.messageId]);
  });

  it("a message acked, replayed, then dead-lettered is a dead letter again (every view) and can be re-driven", async () => {
    const g = `gr-${randomBytes(3).toString("hex")}`;
    const rec = record([g], { deliverLimit: 1, topic: `replay-${g}` });
    await publish(rec);
    const [c] = await claim(g, at(1000));
    await ackDeliveries(
      db.pool,
      [{ messagePk: c!.messagePk, groupId: g, attempt: 1, pushedAt: at(1000), ackedAt: at(1001) }],
      "n1",
    );
    expect(
      await replayRange(db.pool, {
        topic: `replay-${g}`,
        groupId: g,
        since: at(-1000),
        until: at(1000),
        now: at(2000),
        expiresAt: at(3600_000),
        nodeId: "cli",
        reason: "replay",
      }),
    ).toBe(1);
    await fail(g, at(3000), 1, true);
    // Before: the ack from before the replay hid it from every list and refused its re-drive.
    expect((await deadLetters(db.pool, g, t0, at(10_000))).map((d) => d.messageId)).toEqual([rec.messageId]);
    const page = await deadLetterPage(db.pool, { groupId: g, since: t0, until: at(10_000) }, null, 10);
    expect(page.items.map((d) => d.messageId)).toEqual([rec.messageId]);
    expect((await countDeadLetters(db.pool, [g])).get(g)).toBe(1);
    const args = {
      messageId: rec.messageId,
      groupId: g,
      expiresAt: at(3600_000),
      nodeId: "cli",
      reason: "test",
    };
    expect(await redriveDelivery(db.pool, { ...args, now: at(4000) })).toBe(true);
    // Acked after the re-drive: its last delivery ended acked, so no second re-drive.
    const [again] = await claim(g, at(5000));
    await ackDeliveries(
      db.pool,
      [{ messagePk: again!.messagePk, groupId: g, attempt: 1, pushedAt: at(5000), ackedAt: at(5001) }],
      "n1",
    );
    expect(await redriveDelivery(db.pool, { ...args, now: at(6000) })).toBe(false);
    expect(await deadLetters(db.pool, g, t0, at(10_000))).toEqual([]);
    expect((await countDeadLetters(db.pool, [g])).get(g)).toBe(0);
  });

  it("a dead letter replayed leaves the dead letters while owed, and is one row again when dead-lettered again", async () => {
    const g = `gx-${randomBytes(3).toString("hex")}`;
    const rec = record([g], { deliverLimit: 1, topic: `replay-${g}` });
    await publish(rec);
    await fail(g, at(1000), 1, true);
    expect((await countDeadLetters(db.pool, [g])).get(g)).toBe(1);
    const replay = () =>
      replayRange(db.pool, {
        topic: `replay-${g}`,
        groupId: g,
        since: at(-1000),
        until: at(1000),
        now: at(2000),
        expiresAt: at(3600_000),
        nodeId: "cli",
        reason: "replay",
      });
    expect(await replay()).toBe(1);
    // Owed again: not a dead letter (nor counted) while it is.
    expect(await deadLetters(db.pool, g, t0, at(10_000))).toEqual([]);
    expect((await countDeadLetters(db.pool, [g])).get(g)).toBe(0);
    await fail(g, at(3000), 1, true);
    const page = await deadLetterPage(db.pool, { groupId: g, since: t0, until: at(10_000) }, null, 10);
    expect(page.items.map((d) => [d.messageId, d.at.getTime() - t0.getTime()])).toEqual([
      [rec.messageId, 3000],
    ]);
    expect((await countDeadLetters(db.pool, [g])).get(g)).toBe(1);
  });

  it("a replay waiting on a dead-lettering of the same delivery forgets the dead letter it makes", async () => {
    // A helper's walkthrough: the replay's insert waited for the nack's commit, then its delete
    // of the group's dead letters, under its older snapshot, did not see the new row; acked
    // later, the message stayed listed (and counted) until retention.
    const g = `gz-${randomBytes(3).toString("hex")}`;
    const rec = record([g], { deliverLimit: 1, topic: `race-${g}` });
    await publish(rec);
    const [c] = await claim(g, at(1000));
    const a = await db.pool.connect();
    try {
      await a.query("BEGIN");
      await nackDeliveries(
        a,
        [
          {
            messagePk: c!.messagePk,
            groupId: g,
            claimEpoch: c!.claimEpoch,
            attempt: 1,
            pushedAt: at(1000),
            failedAt: at(1000),
            nextAttemptAt: at(1000),
            deadLetter: true,
            reason: "race",
          },
        ],
        "n1",
      );
      const replaying = replayRange(db.pool, {
        topic: `race-${g}`,
        groupId: g,
        since: at(-1000),
        until: at(1000),
        now: at(2000),
        expiresAt: at(3600_000),
        nodeId: "cli",
        reason: "replay",
      });
      // The replay's insert waits for the nack's transaction (the same delivery's key).
      await expect.poll(() => lockWaiters(db.pool)).toBe(1);
      await a.query("COMMIT");
      expect(await replaying).toBe(1);
    } finally {
      a.release();
    }
    expect((await countDeadLetters(db.pool, [g])).get(g)).toBe(0);
    const [again] = await claim(g, at(3000));
    await ackDeliveries(
      db.pool,
      [{ messagePk: again!.messagePk, groupId: g, attempt: 1, pushedAt: at(3000), ackedAt: at(3001) }],
      "n1",
    );
    expect(await deadLetters(db.pool, g, t0, at(10_000))).toEqual([]);
  });

  it("retention's message_ids cleanup takes the day's dead letters with it", async () => {
    const g = `gy-${randomBytes(3).toString("hex")}`;
    const rec = record([g], { deliverLimit: 1 });
    const pk = await publish(rec);
    await fail(g, at(1000), 1, true);
    expect((await countDeadLetters(db.pool, [g])).get(g)).toBe(1);
    const day = `messages_p${t0.toISOString().slice(0, 10).replaceAll("-", "")}`;
    await forgetMessageIdsBatch(db.pool, day, pk - 1, 1);
    expect((await countDeadLetters(db.pool, [g])).get(g)).toBe(0);
    expect(await deadLetters(db.pool, g, t0, at(10_000))).toEqual([]);
  });

  it("a page of a dense group history looks up the messages of its page, not of the second after it", async () => {
    // 3,000 changes of the group within 0.3 s (a replay writes 25,000 a second).
    const g = "dense";
    const recs = Array.from({ length: 3000 }, () => record([], { topic: "dense" }));
    await insertPublishBatch(db.pool, recs, { now: t0, nodeId: "n1", leaseUntil: t0, firstTxCheckAt: t0 });
    await db.pool.query(
      `INSERT INTO message_events (message_pk, kind, at, group_id, node_id)
       SELECT i.message_pk, 'redriven', $2::timestamptz + n * interval '100 microseconds', $3, 'n1'
         FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n) JOIN message_ids i ON i.message_id = u.id`,
      [recs.map((r) => r.messageId), at(60_000), g],
    );
    const first = await groupHistoryRows(db.pool, g, at(59_000), at(61_000), 100);
    expect(first.map((r) => r.event.messageId)).toEqual(recs.slice(0, 100).map((r) => r.messageId));
    const next = await groupHistoryRows(db.pool, g, at(59_000), at(61_000), 100, first[99]!.place);
    expect(next.map((r) => r.event.messageId)).toEqual(recs.slice(100, 200).map((r) => r.messageId));
    // How many times the page looked a message up.
    const { rows } = await db.pool.query({
      text: `EXPLAIN (ANALYZE, FORMAT JSON) ${GROUP_HISTORY_SQL}`,
      values: [g, at(59_000), at(61_000), 100, null, null, null],
    });
    let lookups = 0;
    const walk = (n: { "Relation Name"?: string; "Actual Loops"?: number; Plans?: unknown[] }) => {
      if (/^messages_p\d{8}$/.test(n["Relation Name"] ?? ""))
        lookups = Math.max(lookups, n["Actual Loops"] ?? 0);
      for (const c of n.Plans ?? []) walk(c as typeof n);
    };
    walk(rows[0]["QUERY PLAN"][0].Plan);
    // Before: every row up to a second past the page's last, 3,000 lookups for a page of 100
    // (30,000 and 0.6 s for a page of 2,000 after a replay of 120,000).
    expect(lookups).toBeGreaterThan(0);
    expect(lookups).toBeLessThanOrEqual(300);
  });

  it("countOwedDeliveries counts what is owed per group; pingStore answers", async () => {
    const g = `go-${randomBytes(3).toString("hex")}`;
    await publish(record([g]));
    await publish(record([g]));
    const owed = await countOwedDeliveries(db.pool);
    expect(owed.get(g)).toBe(2);
    await expect(pingStore(db.pool)).resolves.toBeUndefined();
  });
});
