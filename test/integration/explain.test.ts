import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { upsertBinding } from "../../src/store/bindings.js";
import { ensurePartitions } from "../../src/store/db.js";
import {
  ackDeliveries,
  claimDueDeliveries,
  expireDeliveries,
  nackDeliveries,
  redriveDelivery,
} from "../../src/store/deliveries.js";
import { explainMessage, type GroupExplanation } from "../../src/store/explain.js";
import { declareClaimerDead } from "../../src/store/liveness.js";
import { insertPublishBatch, type PublishRecord } from "../../src/store/messages.js";
import { applyTxAnswers, claimDueTxChecks, recordTxChecks } from "../../src/store/transactions.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const t0 = new Date("2026-11-26T10:00:00.000Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

describe("store: explainMessage", () => {
  let db: TestDatabase;

  const publish = async (rec: PublishRecord) => {
    const [r] = await insertPublishBatch(db.pool, [rec], {
      now: t0,
      nodeId: "n1",
      leaseUntil: at(30_000),
      firstTxCheckAt: at(5_000),
    });
    return r!.pk!;
  };
  const claim = (groupId: string, now: Date, claimer = "n1/1") =>
    claimDueDeliveries(db.pool, {
      groups: [groupId],
      limits: [10],
      now,
      claimer,
      leaseUntil: new Date(now.getTime() + 30_000),
    });
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
          nextAttemptAt: at(60_000 * attempt),
          deadLetter: dead,
          reason: "consumer said false",
        },
      ],
      "n1",
    );
  };
  const group = async (messageId: string, groupId: string, now: Date): Promise<GroupExplanation> => {
    const e = await explainMessage(db.pool, messageId, now);
    const g = e?.groups.find((x) => x.groupId === groupId);
    expect(g, `${groupId} in ${JSON.stringify(e?.groups.map((x) => x.groupId))}`).toBeDefined();
    return g!;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, t0);
  });
  afterAll(async () => db.drop());

  it("unknown message: null", async () => {
    expect(await explainMessage(db.pool, "0".repeat(32), t0)).toBeNull();
  });

  it("delivered and acked", async () => {
    const rec = publishRecord(t0, ["ea"]);
    const pk = await publish(rec);
    await ackDeliveries(
      db.pool,
      [{ messagePk: pk, groupId: "ea", attempt: 1, pushedAt: at(1), ackedAt: at(2) }],
      "n1",
    );
    const g = await group(rec.messageId.toUpperCase(), "ea", at(10));
    expect(g.state).toBe("acked");
    expect(g.description).toContain("delivered and acked at 2026-11-26T10:00:00.002Z");
    expect(g.timeline.map((e) => e.kind)).toEqual(["delivered", "acked"]);
    const e = await explainMessage(db.pool, rec.messageId, at(10));
    expect(e!.transaction).toBe("none");
    expect(e!.messageEvents.map((x) => x.kind)).toEqual(["received"]);
  });

  it("acked after a takeover: the timeline shows it, the description warns of a second delivery", async () => {
    const rec = publishRecord(t0, ["et"]);
    const pk = await publish(rec);
    await claim("et", at(1), "dead/1");
    await declareClaimerDead(db.pool, "dead/1", at(2), at(30_002));
    const [c] = await claim("et", at(3), "n1/1");
    expect(c?.messagePk).toBe(pk);
    await ackDeliveries(
      db.pool,
      [{ messagePk: pk, groupId: "et", attempt: 1, pushedAt: at(4), ackedAt: at(5) }],
      "n1",
    );
    const g = await group(rec.messageId, "et", at(10));
    expect(g.state).toBe("acked");
    expect(g.timeline.map((e) => [e.kind, e.detail])).toEqual([
      ["taken_over", "from dead/1 (declared dead)"],
      ["delivered", null],
      ["acked", null],
    ]);
    expect(g.description).toContain(
      "taken over once from a node that went without answering: the consumer may have received it more than once",
    );
  });

  it("held by a node declared dead: owed and about to be taken over, not 'held under a lease'", async () => {
    const rec = publishRecord(t0, ["ek"]);
    await publish(rec);
    await claim("ek", at(1), "killed/1");
    const held = await group(rec.messageId, "ek", at(2));
    expect(held.state).toBe("held");
    // Declared dead now (the declaration's window is in real time, as the claim's).
    await declareClaimerDead(db.pool, "killed/1", new Date(), new Date(Date.now() + 60_000));
    const g = await group(rec.messageId, "ek", at(3));
    expect(g.state).toBe("owed");
    expect(g.description).toContain("held by node killed/1, which was declared dead (its process is gone)");
  });

  it("owed: next attempt, attempt n of the limit, the last nack reason", async () => {
    const rec = publishRecord(t0, ["eo"], { deliverLimit: 5 });
    await publish(rec);
    const fresh = await group(rec.messageId, "eo", t0);
    expect(fresh.state).toBe("owed");
    // Due now or before: said so, and why it can wait (it read "next attempt at <the past>").
    expect(fresh.description).toBe(
      "owed, due since 2026-11-26T10:00:00.000Z: waiting for a node to claim it (no consumer of the group connected, or its consumers busy with older messages) (attempt 1 of 5)",
    );
    await fail("eo", at(1000), 1, false);
    const g = await group(rec.messageId, "eo", at(2000));
    expect(g.state).toBe("owed");
    expect(g.attempts).toBe(1);
    expect(g.lastNackReason).toBe("consumer said false");
    expect(g.description).toBe(
      "owed, next attempt at 2026-11-26T10:01:00.000Z (attempt 2 of 5; last nack: consumer said false)",
    );
  });

  it("a claim whose lease lapsed: owed, and whose claim lapsed when", async () => {
    const rec = publishRecord(t0, ["el"]);
    await publish(rec);
    await claim("el", at(1), "paused/1");
    // Its lease (30 s) ran out and the node did not renew it. Before: "owed, next attempt at
    // 10:00:00", nothing said of the node that had held it.
    const g = await group(rec.messageId, "el", at(60_000));
    expect(g.state).toBe("owed");
    expect(g.description).toBe(
      "owed: its claim by node paused/1 lapsed at 2026-11-26T10:00:30.001Z (that node stopped renewing it: stopped, paused or cut off from the database); the next claim of the group takes it over (attempt 1 of 100)",
    );
  });

  it("held by node X under a lease until T", async () => {
    const rec = publishRecord(t0, ["eh"]);
    await publish(rec);
    await db.pool.query(
      `INSERT INTO nodes (node_id, address, started_at, heartbeat_at, claimer) VALUES ('node-a', '10.0.0.1:13800', $1, $1, 'node-a/7')`,
      [t0],
    );
    await claim("eh", at(1000), "node-a/7");
    const g = await group(rec.messageId, "eh", at(2000));
    expect(g.state).toBe("held");
    expect(g.heldBy).toMatchObject({ claimer: "node-a/7", nodeId: "node-a", address: "10.0.0.1:13800" });
    expect(g.description).toBe(
      "held by node node-a (10.0.0.1:13800) under a lease until 2026-11-26T10:00:31.000Z (attempt 1 of 100)",
    );
    // Past its lease, the delivery is owed again (another node may claim it).
    expect((await group(rec.messageId, "eh", at(40_000))).state).toBe("owed");
  });

  it("delayed until T: no attempt yet, first one in the future", async () => {
    const rec = publishRecord(t0, ["ed"]);
    const pk = await publish(rec);
    await db.pool.query("UPDATE deliveries SET next_attempt_at = $2 WHERE message_pk = $1", [
      pk,
      at(3_600_000),
    ]);
    const g = await group(rec.messageId, "ed", at(1000));
    expect(g.state).toBe("delayed");
    expect(g.description).toBe("delayed until 2026-11-26T11:00:00.000Z");
    expect((await group(rec.messageId, "ed", at(3_600_001))).state).toBe("owed");
  });

  it("dead-lettered, then re-driven (owed again)", async () => {
    const rec = publishRecord(t0, ["edl"], { deliverLimit: 1 });
    await publish(rec);
    await fail("edl", at(1000), 1, true);
    const g = await group(rec.messageId, "edl", at(2000));
    expect(g.state).toBe("dead_lettered");
    expect(g.description).toContain("dead-lettered at 2026-11-26T10:00:01.000Z after 1 attempt;");
    await redriveDelivery(db.pool, {
      messageId: rec.messageId,
      groupId: "edl",
      now: at(3000),
      expiresAt: at(3_600_000),
      nodeId: "n1",
      reason: "test",
    });
    const again = await group(rec.messageId, "edl", at(4000));
    expect(again.state).toBe("owed");
    expect(again.timeline.map((e) => e.kind)).toContain("redriven");
  });

  it("expired", async () => {
    const rec = publishRecord(t0, ["eex"], { expiresAt: at(10_000) });
    await publish(rec);
    const before = await group(rec.messageId, "eex", at(20_000));
    expect(before.description).toContain("about to be dropped");
    await expireDeliveries(db.pool, at(20_000), "n1", 1000);
    const g = await group(rec.messageId, "eex", at(21_000));
    expect(g.state).toBe("expired");
    expect(g.description).toBe("expired at 2026-11-26T10:00:20.000Z (expiredTime passed)");
  });

  it("waiting for its 2PC commit (last check-back and answer), then committed, or rolled back", async () => {
    await upsertBinding(
      db.pool,
      {
        groupId: "etx",
        topic: "txtopic",
        messageType: "pay",
        bindType: 0,
        version: "1.0.0",
        watermark: 100,
        persistent: true,
      },
      "cli",
      t0,
    );
    const rec = publishRecord(t0, [], { topic: "txtopic", commit: false, groupId: "producer" });
    await publish(rec);
    const waiting = await explainMessage(db.pool, rec.messageId, at(1000));
    expect(waiting!.transaction).toBe("waiting_commit");
    expect(waiting!.groups.map((g) => [g.groupId, g.state])).toEqual([["etx", "waiting_commit"]]);
    expect(waiting!.groups[0]!.description).toBe(
      "waiting for its 2PC commit (no check-back yet; next check at 2026-11-26T10:00:05.000Z)",
    );
    // Its check due an hour ago: no producer of its group was connected. Before: "next check at
    // <an hour ago>".
    const late = await explainMessage(db.pool, rec.messageId, at(3_600_000));
    expect(late!.groups[0]!.description).toBe(
      "waiting for its 2PC commit (no check-back yet; a check-back due since 2026-11-26T10:00:05.000Z, sent once a producer of group producer is connected to a node)",
    );
    const [c] = await claimDueTxChecks(db.pool, {
      groups: ["producer"],
      now: at(6000),
      claimer: "n1/1",
      leaseUntil: at(36_000),
      giveUpBefore: at(-3_600_000),
      limit: 10,
    });
    await recordTxChecks(
      db.pool,
      [
        {
          messagePk: c!.messagePk,
          claimEpoch: c!.claimEpoch,
          sent: true,
          check: 1,
          nextCheckAt: at(66_000),
          detail: "asked 127.0.0.1:5000",
        },
      ],
      { now: at(6000), nodeId: "n1" },
    );
    // Asked, not answered yet: the check row's own detail is not an answer.
    const asked = await explainMessage(db.pool, rec.messageId, at(6500));
    expect(asked!.pending).toMatchObject({ checks: 1, lastAnswer: null });
    expect(asked!.groups[0]!.description).toBe(
      "waiting for its 2PC commit (last check-back at 2026-11-26T10:00:06.000Z, answer: none yet; next check at 2026-11-26T10:01:06.000Z)",
    );
    await applyTxAnswers(
      db.pool,
      [{ messageId: rec.messageId, kind: "tx_checked", detail: "unknown", check: 1 }],
      {
        now: at(7000),
        nodeId: "n1",
        leaseUntil: at(37_000),
        plan: () => [],
      },
    );
    const checked = await explainMessage(db.pool, rec.messageId, at(8000));
    expect(checked!.pending).toMatchObject({ checks: 1, lastAnswer: "unknown" });
    expect(checked!.groups[0]!.description).toBe(
      "waiting for its 2PC commit (last check-back at 2026-11-26T10:00:06.000Z, answer: unknown; next check at 2026-11-26T10:01:06.000Z)",
    );
    await applyTxAnswers(
      db.pool,
      [{ messageId: rec.messageId, kind: "committed", detail: "producer", check: null }],
      {
        now: at(9000),
        nodeId: "n1",
        leaseUntil: at(39_000),
        plan: () => [{ groupId: "etx", claimedBy: null }],
      },
    );
    const committed = await explainMessage(db.pool, rec.messageId, at(10_000));
    expect(committed!.transaction).toBe("committed");
    expect(committed!.groups[0]!.state).toBe("owed");

    const rb = publishRecord(t0, [], { topic: "txtopic", commit: false, groupId: "producer" });
    await publish(rb);
    await applyTxAnswers(
      db.pool,
      [{ messageId: rb.messageId, kind: "rolled_back", detail: "producer said rollback", check: null }],
      {
        now: at(9000),
        nodeId: "n1",
        leaseUntil: at(39_000),
        plan: () => [],
      },
    );
    const rolled = await explainMessage(db.pool, rb.messageId, at(10_000));
    expect(rolled!.transaction).toBe("rolled_back");
    expect(rolled!.groups[0]!.state).toBe("rolled_back");
    expect(rolled!.groups[0]!.description).toBe(
      "rolled back at 2026-11-26T10:00:09.000Z (producer said rollback): never delivered",
    );
  });

  it("a group bound after the message was stored: not owed", async () => {
    const rec = publishRecord(t0, ["ex1"], { topic: "late" });
    await publish(rec);
    await upsertBinding(
      db.pool,
      {
        groupId: "ex2",
        topic: "late",
        messageType: "pay",
        bindType: 0,
        version: "1.0.0",
        watermark: 100,
        persistent: true,
      },
      "cli",
      t0,
    );
    const e = await explainMessage(db.pool, rec.messageId, at(1000));
    expect(e!.groups.map((g) => [g.groupId, g.state])).toEqual([
      ["ex1", "owed"],
      ["ex2", "not_owed"],
    ]);
  });
});
