import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensurePartitions } from "../../src/store/db.js";
import { claimDueDeliveries } from "../../src/store/deliveries.js";
import { insertPublishBatch, type PublishRecord } from "../../src/store/messages.js";
import {
  type ApplyTxAnswersOptions,
  applyTxAnswers,
  claimDueTxChecks,
  giveUpTransactions,
  nextTxCheckTime,
  recordTxChecks,
  type TxAnswer,
} from "../../src/store/transactions.js";
import { waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const t0 = new Date("2026-11-26T10:00:00.000Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

function uncommitted(groupId: string, over: Partial<PublishRecord> = {}): PublishRecord {
  return {
    messageId: randomBytes(16).toString("hex"),
    topic: "trade",
    messageType: "pay",
    groupId,
    commit: false,
    expiresAt: at(3600_000),
    deliverLimit: 7,
    createdAt: t0,
    properties: [{ key: "k", value: "v" }],
    snappy: false,
    bodyIsString: true,
    body: Buffer.from("tx body"),
    deliveries: [],
    ...over,
  };
}

describe("store: two-phase commit", () => {
  let db: TestDatabase;
  let planned: string[] = [];
  const plan = (groups: { groupId: string; claimedBy: string | null }[]): ApplyTxAnswersOptions => ({
    now: at(500),
    nodeId: "n1",
    leaseUntil: at(30_500),
    plan: (m) => {
      planned.push(m.messageId);
      return groups;
    },
  });
  const store = async (groupId: string, n = 1, storedAt = t0) => {
    const recs = Array.from({ length: n }, () => uncommitted(groupId));
    await insertPublishBatch(db.pool, recs, {
      now: storedAt,
      nodeId: "n1",
      leaseUntil: at(30_000),
      firstTxCheckAt: new Date(storedAt.getTime() + 1000),
    });
    return recs.map((r) => r.messageId);
  };
  const answer = (messageId: string, kind: TxAnswer["kind"], check: number | null = null): TxAnswer => ({
    messageId,
    kind,
    detail: kind === "tx_checked" ? "unknown" : `${kind} by test`,
    check,
  });
  /** The history of one message, as the README's query reads it. */
  const history = async (messageId: string) => {
    const { rows } = await db.pool.query<{ kind: string; attempt: number | null; detail: string | null }>(
      `SELECT e.kind, e.attempt, e.detail, e.node_id FROM messages m JOIN message_events e ON e.message_pk = m.id
        WHERE m.message_id = $1 ORDER BY e.at, e.kind`,
      [messageId],
    );
    return rows;
  };
  const count = async (table: "deliveries" | "pending_transactions", messageIds: string[]) => {
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${table} t JOIN messages m ON m.id = t.message_pk WHERE m.message_id = ANY($1)`,
      [messageIds],
    );
    return rows[0]!.n;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, t0);
  });
  afterAll(async () => db.drop());

  it("commit: pending row gone, planned deliveries created (pre-claimed or not), committed event, one NOTIFY", async () => {
    const ids = await store("p-commit", 2);
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    let notified = 0;
    listener.on("notification", () => notified++);
    await listener.query("LISTEN kiteq_due");
    try {
      planned = [];
      const results = await applyTxAnswers(
        db.pool,
        ids.map((id) => answer(id, "committed", 2)),
        plan([
          { groupId: "g1", claimedBy: null },
          { groupId: "g2", claimedBy: "A/1" },
        ]),
      );
      expect(results.map((r) => r.applied)).toEqual([true, true]);
      expect(results[0]!.message).toMatchObject({ messageId: ids[0], deliverLimit: 7, groupId: "p-commit" });
      expect(results[0]!.message!.body.toString()).toBe("tx body");
      expect(results[0]!.message!.properties).toEqual([{ key: "k", value: "v" }]);
      expect(planned.sort()).toEqual([...ids].sort());
      // Delivered when PostgreSQL gets to it (loaded: seconds later); then no second one.
      await waitFor(() => notified > 0, 15_000, "the NOTIFY");
      await new Promise((r) => setTimeout(r, 300));
      expect(notified).toBe(1);
    } finally {
      await listener.end();
    }
    expect(await count("pending_transactions", ids)).toBe(0);
    const { rows } = await db.pool.query(
      `SELECT d.group_id, d.claimed_by, d.claim_epoch, d.lease_until, d.deliver_limit, d.next_attempt_at
         FROM deliveries d JOIN messages m ON m.id = d.message_pk WHERE m.message_id = $1 ORDER BY d.group_id`,
      [ids[0]],
    );
    expect(rows).toEqual([
      {
        group_id: "g1",
        claimed_by: null,
        claim_epoch: 0,
        lease_until: null,
        deliver_limit: 7,
        next_attempt_at: at(500),
      },
      {
        group_id: "g2",
        claimed_by: "A/1",
        claim_epoch: 1,
        lease_until: at(30_500),
        deliver_limit: 7,
        next_attempt_at: at(500),
      },
    ]);
    // The unclaimed ones are found by the claim path like any committed delivery.
    const claimed = await claimDueDeliveries(db.pool, {
      groups: ["g1"],
      limits: [10],
      now: at(600),
      claimer: "B/1",
      leaseUntil: at(30_600),
    });
    expect(claimed.map((c) => c.messageId).sort()).toEqual([...ids].sort());
    expect(await history(ids[0]!)).toEqual([
      { kind: "uncommitted", attempt: null, detail: null, node_id: "n1" },
      { kind: "committed", attempt: 2, detail: "committed by test", node_id: "n1" },
    ]);
  });

  it("rollback: pending row gone, rolled_back event, no delivery, nothing planned", async () => {
    const [id] = await store("p-rollback");
    planned = [];
    const [r] = await applyTxAnswers(
      db.pool,
      [answer(id!, "rolled_back")],
      plan([{ groupId: "g1", claimedBy: null }]),
    );
    expect(r!.applied).toBe(true);
    expect(planned).toEqual([]);
    expect(await count("pending_transactions", [id!])).toBe(0);
    expect(await count("deliveries", [id!])).toBe(0);
    expect((await history(id!)).map((e) => e.kind)).toEqual(["uncommitted", "rolled_back"]);
  });

  it("is idempotent: a second commit, a rollback after a commit, or an unknown id change nothing", async () => {
    const [a, b] = await store("p-idem", 2);
    const opts = plan([{ groupId: "g1", claimedBy: null }]);
    // In one batch the first decision wins; an "unknown" after it is dropped.
    const first = await applyTxAnswers(
      db.pool,
      [
        answer(a!, "committed"),
        answer(a!, "rolled_back"),
        answer(a!, "tx_checked", 1),
        answer(b!, "rolled_back"),
      ],
      opts,
    );
    expect(first.map((r) => r.applied)).toEqual([true, false, false, true]);
    planned = [];
    const again = await applyTxAnswers(
      db.pool,
      [
        answer(a!, "committed"),
        answer(a!, "rolled_back"),
        answer(b!, "committed"),
        answer(a!, "tx_checked", 2),
        answer(randomBytes(16).toString("hex"), "committed"),
      ],
      opts,
    );
    expect(again.map((r) => r.applied)).toEqual([false, false, false, false, false]);
    expect(planned).toEqual([]);
    expect((await history(a!)).map((e) => e.kind)).toEqual(["uncommitted", "committed"]);
    expect((await history(b!)).map((e) => e.kind)).toEqual(["uncommitted", "rolled_back"]);
    expect(await count("deliveries", [a!])).toBe(1);
    expect(await count("deliveries", [b!])).toBe(0);
  });

  it("unknown answer: a tx_checked event, the message stays pending", async () => {
    const [id] = await store("p-unknown");
    const [r] = await applyTxAnswers(db.pool, [answer(id!, "tx_checked", 3)], plan([]));
    expect(r!.applied).toBe(true);
    expect(await count("pending_transactions", [id!])).toBe(1);
    expect(await history(id!)).toMatchObject([
      { kind: "uncommitted" },
      { kind: "tx_checked", attempt: 3, detail: "unknown" },
    ]);
  });

  it("claims due checks of the given groups with SKIP LOCKED, leased and fenced by epoch", async () => {
    const ids = await store("p-claim", 3);
    await store("p-other", 1);
    const args = (now: Date, claimer = "A/1", limit = 10) => ({
      groups: ["p-claim"],
      now,
      claimer,
      leaseUntil: new Date(now.getTime() + 30_000),
      giveUpBefore: at(-3600_000),
      limit,
    });
    expect(await claimDueTxChecks(db.pool, args(at(500)))).toEqual([]); // first check at +1 s
    // Another node's transaction holds one row locked: it is skipped, not waited for.
    const locker = await db.pool.connect();
    try {
      await locker.query("BEGIN");
      await locker.query(
        "SELECT 1 FROM pending_transactions p JOIN messages m ON m.id = p.message_pk WHERE m.message_id = $1 FOR UPDATE OF p",
        [ids[0]],
      );
      const claimed = await claimDueTxChecks(db.pool, args(at(2000)));
      expect(claimed.map((c) => c.messageId).sort()).toEqual([ids[1], ids[2]].sort());
      expect(claimed[0]).toMatchObject({ claimEpoch: 1, checks: 0, groupId: "p-claim", topic: "trade" });
      await locker.query("ROLLBACK");
      // Leased: only the row that was locked is claimable now.
      const rest = await claimDueTxChecks(db.pool, args(at(2100), "B/1"));
      expect(rest.map((c) => c.messageId)).toEqual([ids[0]]);
      const [c1, c2] = claimed;
      const written = await recordTxChecks(
        db.pool,
        [
          {
            messagePk: c1!.messagePk,
            claimEpoch: 1,
            sent: true,
            check: 1,
            nextCheckAt: at(4000),
            detail: "check 1 sent to x",
          },
          {
            messagePk: c2!.messagePk,
            claimEpoch: 1,
            sent: false,
            check: 1,
            nextCheckAt: at(4000),
            detail: "",
          },
          // Not our claim (B holds ids[0] under epoch 1): a record with another epoch changes nothing.
          {
            messagePk: rest[0]!.messagePk,
            claimEpoch: 0,
            sent: false,
            check: 1,
            nextCheckAt: at(4000),
            detail: "",
          },
        ],
        { now: at(2000), nodeId: "A" },
      );
      expect(written).toBe(2);
      const { rows } = await db.pool.query(
        `SELECT m.message_id, p.checks, p.next_check_at, p.claimed_by FROM pending_transactions p
           JOIN messages m ON m.id = p.message_pk WHERE p.group_id = 'p-claim'`,
      );
      const byId = new Map(rows.map((r) => [r.message_id, r]));
      expect(byId.get(c1!.messageId)).toMatchObject({ checks: 1, next_check_at: at(4000), claimed_by: null });
      expect(byId.get(c2!.messageId)).toMatchObject({ checks: 0, next_check_at: at(1000), claimed_by: null });
      expect(byId.get(ids[0]!)).toMatchObject({ claimed_by: "B/1" });
      expect(await history(c1!.messageId)).toMatchObject([
        { kind: "uncommitted" },
        { kind: "tx_checked", attempt: 1, detail: "check 1 sent to x" },
      ]);
      expect((await history(c2!.messageId)).map((e) => e.kind)).toEqual(["uncommitted"]);
      // B's lease runs out: A takes the row over with a new epoch; B's late record is fenced off.
      const takeover = await claimDueTxChecks(db.pool, args(at(40_000)));
      expect(takeover.map((c) => [c.messageId, c.claimEpoch])).toContainEqual([ids[0], 2]);
      const late = await recordTxChecks(
        db.pool,
        [
          {
            messagePk: rest[0]!.messagePk,
            claimEpoch: 1,
            sent: true,
            check: 1,
            nextCheckAt: at(99_000),
            detail: "late",
          },
        ],
        { now: at(40_001), nodeId: "B" },
      );
      expect(late).toBe(0);
    } finally {
      await locker.query("ROLLBACK").catch(() => undefined);
      locker.release();
    }
  });

  it("a check's record and a batch of answers on the same rows wait for each other, never deadlock", async () => {
    // Seen at 200,000 pending with a producer answering its checks: "deadlock detected" in the
    // check pass (its tx_checked rows lost) and on batches of TX_ACKs (answers dropped until the
    // next check). Answers lock their rows in message_pk order; the record must too.
    await store("p-lock-order", 2);
    const claimed = await claimDueTxChecks(db.pool, {
      groups: ["p-lock-order"],
      now: at(2000),
      claimer: "A/1",
      leaseUntil: at(30_000),
      giveUpBefore: at(-3600_000),
      limit: 10,
    });
    // Records come in claim order, which need not be message_pk order: the higher one first here.
    const [first, second] = [...claimed].sort((a, b) => b.messagePk - a.messagePk);
    const record = (c: (typeof claimed)[number]) => ({
      messagePk: c.messagePk,
      claimEpoch: c.claimEpoch,
      sent: true,
      check: 1,
      nextCheckAt: at(12_000),
      detail: "check 1 sent to x",
    });
    const answers = await db.pool.connect();
    try {
      await answers.query("BEGIN");
      // A batch of answers holds the lower row (its commit is planned under the lock)...
      await applyTxAnswers(answers, [answer(second!.messageId, "committed")], plan([]));
      // ...while the check pass records both checks...
      const recorded = recordTxChecks(db.pool, [record(first!), record(second!)], {
        now: at(2000),
        nodeId: "A",
      }).then(
        (n) => n,
        (err: unknown) => err,
      );
      await new Promise((r) => setTimeout(r, 200));
      // ...and the same batch goes on to the higher row.
      await applyTxAnswers(answers, [answer(first!.messageId, "rolled_back")], plan([]));
      await answers.query("COMMIT");
      // Both answers were applied first: the record finds no row left to reschedule.
      expect(await recorded).toBe(0);
    } finally {
      await answers.query("ROLLBACK").catch(() => undefined);
      answers.release();
    }
    expect(claimed).toHaveLength(2);
    const [low, high] = [second!.messageId, first!.messageId];
    expect((await history(low!)).map((e) => e.kind)).toContain("committed");
    expect((await history(high!)).map((e) => e.kind)).toContain("rolled_back");
  });

  it("gives up after the give-up age: rolled_back with the reason; younger ones are kept, not claimed past it", async () => {
    const old = await store("p-giveup", 2, at(-10_000));
    const [young] = await store("p-giveup", 1, at(-1000));
    // Past the give-up age: not claimed for a check (the sweep takes it).
    const claimed = await claimDueTxChecks(db.pool, {
      groups: ["p-giveup"],
      now: t0,
      claimer: "A/1",
      leaseUntil: at(30_000),
      giveUpBefore: at(-5000),
      limit: 10,
    });
    expect(claimed.map((c) => c.messageId)).toEqual([young]);
    await recordTxChecks(
      db.pool,
      [
        {
          messagePk: claimed[0]!.messagePk,
          claimEpoch: claimed[0]!.claimEpoch,
          sent: false,
          check: 1,
          nextCheckAt: t0,
          detail: "",
        },
      ],
      { now: t0, nodeId: "A" },
    );
    const n = await giveUpTransactions(db.pool, {
      storedBefore: at(-5000),
      now: t0,
      nodeId: "A",
      detail: "gave up after 5 s without a commit or rollback",
      limit: 100,
    });
    expect(n).toBe(2);
    for (const id of old) {
      expect(await history(id)).toEqual([
        { kind: "uncommitted", attempt: null, detail: null, node_id: "n1" },
        {
          kind: "rolled_back",
          attempt: 0,
          detail: "gave up after 5 s without a commit or rollback (0 checks sent)",
          node_id: "A",
        },
      ]);
    }
    expect(await count("pending_transactions", old)).toBe(0);
    expect(await count("pending_transactions", [young!])).toBe(1);
  });

  it("next check time: the earliest due check of the groups, or the earliest give-up", async () => {
    await db.pool.query("DELETE FROM pending_transactions");
    expect(await nextTxCheckTime(db.pool, ["p-next"], 60)).toBeNull();
    await store("p-next", 1, at(0)); // check at +1 s, give up at +60 s
    await store("p-far", 1, at(-50_000)); // give up at +10 s
    expect(await nextTxCheckTime(db.pool, ["p-next"], 60)).toEqual(at(1000));
    expect(await nextTxCheckTime(db.pool, [], 60)).toEqual(at(10_000));
  });
});
