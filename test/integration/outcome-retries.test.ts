/**
 * OutcomeWriter against a real PostgreSQL whose statements fail for a while (a pool that refuses
 * its first queries, as a database that is away does): a running node retries an outcome until
 * it is written, however many attempts that takes (given up, the push would be missing from the
 * history once another node delivered again), and only a stopping node gives up, within a bound.
 */
import type pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { OutcomeWriter } from "../../src/delivery/outcomes.js";
import { silentLogger } from "../../src/log.js";
import { ensurePartitions } from "../../src/store/db.js";
import { ACK_AFTER_END_SQL, claimDueDeliveries } from "../../src/store/deliveries.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { createTestDatabase, interceptStatements, type TestDatabase } from "../support/db.js";
import { deadLetterDue } from "../support/dead-letters.js";
import { publishRecord } from "../support/records.js";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await ensurePartitions(db.pool, new Date());
});

afterAll(async () => {
  await db?.drop();
});

/** A pool whose next `failures` statements fail as a refused connection would. */
function failingPool(real: pg.Pool, state: { failures: number }): pg.Pool {
  return interceptStatements(real, (_q, forward) => {
    if (state.failures > 0) {
      state.failures--;
      return Promise.reject(
        Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }),
      );
    }
    return forward();
  });
}

it("retries an ack until written while running (more than the stop bound of 8), and gives up only when stopping", async () => {
  const now = new Date();
  const rec = publishRecord(now, ["g"]);
  const [stored] = await insertPublishBatch(db.pool, [rec], {
    now,
    nodeId: "n",
    leaseUntil: now,
    firstTxCheckAt: now,
  });
  const [claimed] = await claimDueDeliveries(db.pool, {
    groups: ["g"],
    limits: [1],
    now: new Date(now.getTime() + 1),
    claimer: "n/1",
    leaseUntil: new Date(now.getTime() + 30_000),
  });
  expect(claimed).toBeDefined();
  const state = { failures: 12 };
  const writer = new OutcomeWriter(failingPool(db.pool, state), "n", silentLogger, 5);
  const ended = await new Promise<boolean | false>((resolve) =>
    writer.ack({ messagePk: stored!.pk!, groupId: "g", attempt: 1, pushedAt: now, ackedAt: now }, resolve),
  );
  expect(ended).toBe(true);
  expect(state.failures).toBe(0);
  const { rows } = await db.pool.query(
    "SELECT kind::text FROM message_events WHERE message_pk = $1 AND group_id = 'g'",
    [stored!.pk!],
  );
  expect(rows.map((r) => r.kind)).toEqual(["acked"]);

  // Stopping: a database that stays away makes the writer give up, within its bound.
  state.failures = 1_000;
  const given = new Promise<boolean | false>((resolve) =>
    writer.ack({ messagePk: stored!.pk!, groupId: "g", attempt: 2, pushedAt: now, ackedAt: now }, resolve),
  );
  const t0 = Date.now();
  await writer.drain();
  expect(await given).toBe(false);
  expect(Date.now() - t0).toBeLessThan(10_000);
});

it("a failed batch of outcomes is logged once, not once per item", async () => {
  const now = new Date();
  const records = Array.from({ length: 20 }, () => publishRecord(now, ["gb"]));
  const stored = await insertPublishBatch(db.pool, records, {
    now,
    nodeId: "n",
    leaseUntil: now,
    firstTxCheckAt: now,
  });
  const lines: { msg: string }[] = [];
  const log = pino({ level: "warn" }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  const state = { failures: 1 };
  const writer = new OutcomeWriter(failingPool(db.pool, state), "n", log, 5);
  // One batch (the acks' window gathers them), failing once, then written.
  await Promise.all(
    stored.map(
      (s) =>
        new Promise((resolve) =>
          writer.ack({ messagePk: s.pk!, groupId: "gb", attempt: 1, pushedAt: now, ackedAt: now }, resolve),
        ),
    ),
  );
  // Before: one line per item of the batch (the first few, then "15 more").
  expect(lines.map((l) => l.msg)).toEqual(["a batch of delivery outcomes failed to write, retrying"]);
  await writer.drain();
});

it("an outcome the database refuses for its data is given up after the retries, also while running", async () => {
  const now = new Date();
  const [stored] = await insertPublishBatch(db.pool, [publishRecord(now, ["gr"])], {
    now,
    nodeId: "n",
    leaseUntil: now,
    firstTxCheckAt: now,
  });
  // Every write refused as an invalid timestamp would be (SQLSTATE 22007): it never succeeds.
  const refusing = interceptStatements(db.pool, () =>
    Promise.reject(Object.assign(new Error("invalid input syntax for type timestamp"), { code: "22007" })),
  );
  const writer = new OutcomeWriter(refusing, "n", silentLogger, 1);
  const result = await Promise.race([
    new Promise<boolean | false>((resolve) =>
      writer.ack({ messagePk: stored!.pk!, groupId: "gr", attempt: 1, pushedAt: now, ackedAt: now }, resolve),
    ),
    new Promise<"still retrying">((r) => setTimeout(() => r("still retrying"), 10_000)),
  ]);
  // Before: retried for ever while the node ran (its delivery held, its lease renewed).
  expect(result).toBe(false);
  await writer.drain();
});

/** One message of `groupId` stored and dead-lettered at its deliver limit of 1. */
async function deadLettered(groupId: string): Promise<{ pk?: number | undefined }> {
  const now = new Date();
  const [stored] = await insertPublishBatch(db.pool, [publishRecord(now, [groupId], { deliverLimit: 1 })], {
    now,
    nodeId: "n",
    leaseUntil: now,
    firstTxCheckAt: now,
  });
  expect(await deadLetterDue(db.pool, groupId, { now, limit: 1, reason: "no ack in time" })).toBe(1);
  return stored!;
}

it("a late ack whose after-end statement fails is retried on its own until written", async () => {
  // A helper's walkthrough (connections terminated every second): the statement recording an ack
  // of a dead-lettered delivery failed once, and the ack was lost for good (logged without an id).
  const stored = await deadLettered("gl");
  // The acks' statement goes through; the after-end statement right after it fails once.
  let calls = 0;
  const flaky = interceptStatements(db.pool, (q, forward) => {
    if (q.text !== ACK_AFTER_END_SQL) return forward();
    return ++calls === 1
      ? Promise.reject(Object.assign(new Error("terminating connection"), { code: "57P01" }))
      : forward();
  });
  const writer = new OutcomeWriter(flaky, "n", silentLogger, 5);
  const late = {
    messagePk: stored.pk!,
    groupId: "gl",
    attempt: 1,
    pushedAt: null,
    ackedAt: new Date(),
  };
  expect(await new Promise((resolve) => writer.ack(late, resolve))).toBe(false);
  await writer.drain();
  // The after-end statement: failed once, then run on its own.
  expect(calls).toBe(2);
  const { rows } = await db.pool.query(
    "SELECT kind::text FROM message_events WHERE message_pk = $1 AND group_id = 'gl' ORDER BY at, kind",
    [stored.pk!],
  );
  expect(rows.map((r) => r.kind)).toEqual(["delivered", "nacked", "dead_lettered", "acked"]);
  const { rows: dead } = await db.pool.query("SELECT 1 FROM dead_letters WHERE group_id = 'gl'");
  expect(dead).toHaveLength(0);
});

it("a late ack recorded after its delivery's dead-lettering is done as acked (the history has it)", async () => {
  const stored = await deadLettered("gm");
  const writer = new OutcomeWriter(db.pool, "n", silentLogger, 5);
  const late = { messagePk: stored.pk!, groupId: "gm", attempt: 1, pushedAt: null, ackedAt: new Date() };
  // Before: false (it ended no delivery), so kiteq_group_acked_total missed the acks the history has.
  expect(await new Promise((resolve) => writer.ack(late, resolve))).toBe(true);
  // A second late ack of it: the history has nothing new, and neither does the count.
  expect(await new Promise((resolve) => writer.ack({ ...late, ackedAt: new Date() }, resolve))).toBe(false);
  await writer.drain();
});

it("a nack at the deliver limit is done as dead-lettered only when it ended the delivery", async () => {
  const now = new Date();
  const recs = [0, 1].map(() => publishRecord(now, ["gd"], { deliverLimit: 1 }));
  const stored = await insertPublishBatch(db.pool, recs, {
    now,
    nodeId: "n",
    leaseUntil: now,
    firstTxCheckAt: now,
  });
  const claimed = await claimDueDeliveries(db.pool, {
    groups: ["gd"],
    limits: [2],
    now: new Date(now.getTime() + 1),
    claimer: "n/1",
    leaseUntil: new Date(now.getTime() + 30_000),
  });
  expect(claimed).toHaveLength(2);
  const writer = new OutcomeWriter(db.pool, "n", silentLogger, 5);
  const [acked, live] = stored.map((s) => claimed.find((c) => c.messagePk === s.pk)!);
  // The first one's ack is written before its nack (an ack that beat the timeout's nack batch).
  expect(
    await new Promise((resolve) =>
      writer.ack(
        { messagePk: acked!.messagePk, groupId: "gd", attempt: 1, pushedAt: now, ackedAt: now },
        resolve,
      ),
    ),
  ).toBe(true);
  const nackAtLimit = (c: typeof acked) =>
    new Promise((resolve) =>
      writer.nack(
        {
          messagePk: c!.messagePk,
          groupId: "gd",
          claimEpoch: c!.claimEpoch,
          attempt: 1,
          pushedAt: now,
          failedAt: new Date(now.getTime() + 2),
          nextAttemptAt: new Date(now.getTime() + 2),
          deadLetter: true,
          reason: "no ack in time",
        },
        resolve,
      ),
    );
  // Before: kiteq_group_dead_lettered_total counted both, though the history and the dead
  // letters hold one.
  expect(await nackAtLimit(acked)).toBe(false);
  expect(await nackAtLimit(live)).toBe(true);
  await writer.drain();
  const { rows } = await db.pool.query<{ message_pk: string }>(
    "SELECT message_pk FROM dead_letters WHERE group_id = 'gd'",
  );
  expect(rows.map((r) => Number(r.message_pk))).toEqual([live!.messagePk]);
});
