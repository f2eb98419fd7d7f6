/**
 * Every background and operator statement of issue 11, point 1, as one list: what `bench backlog`
 * times at each backlog size, and what the plan tests EXPLAIN (no sequential scan of deliveries,
 * messages or message_events, whatever the statistics). Each entry calls the store function the
 * broker calls, so what is measured is what runs.
 */
import type pg from "pg";
import type { BacklogFixture } from "./backlog-fixture.js";
import { ensurePartitions, forgetMessageIdsBatch } from "./db.js";
import {
  ackAfterEnd,
  ackDeliveries,
  BACKGROUND_BATCH,
  claimDueDeliveries,
  countOwedDeliveries,
  expireDeliveries,
  nackDeliveries,
  nextDueAfter,
  RENEW_BATCH,
  REPLAY_BATCH,
  redriveDelivery,
  releaseDeliveries,
  renewLeases,
} from "./deliveries.js";
import { explainMessage, TOPIC_BINDINGS_SQL } from "./explain.js";
import {
  countDeadLetters,
  countPendingTransactions,
  deadLetterPage,
  groupBacklogs,
  listNodes,
} from "./groups.js";
import { deadLetters, groupHistory, messageHistory } from "./history.js";
import { claimerLiveness, DECLARE_CLAIMER_DEAD, declareNodeDead } from "./liveness.js";
import { heartbeatNode } from "./nodes.js";
import { FORGET_REGX_ROUTING_BEFORE, TAKE_REGX_ROUTING } from "./regx-routing.js";
import {
  applyTxAnswers,
  claimDueTxChecks,
  giveUpTransactions,
  nextTxCheckTime,
  recordTxChecks,
  releaseTxClaimsOf,
} from "./transactions.js";

/** Rows sampled from the backlog for the statements (see sampleBacklog). */
export interface CatalogSample {
  owedPks: number[];
  goneClaimedPks: number[];
  pendingIds: string[];
  pendingPks: number[];
  messageId: string;
}

/**
 * Statements whose cost grows with what they must read by design, with why: reported, not held
 * to the 2x bound of the others.
 */
export const GROWS_BY_DESIGN: ReadonlyMap<string, string> = new Map([
  [
    "dead letters of a group, a filter matching none",
    "reads the group's current dead letters (owed/10 here), not more",
  ],
]);

/** One measured statement. `run` gets a client inside a transaction the caller rolls back. */
export interface CatalogEntry {
  name: string;
  /**
   * Finds its rows of deliveries or pending_transactions by key (lockByKey): the plan
   * tests hold it to the primary key for every lookup there.
   */
  byKey?: boolean;
  /** Ensures the state does not change between repetitions: the caller rolls back after it. */
  run(db: pg.PoolClient): Promise<unknown>;
}

const MINUTE = 60_000;

/** The statements, bound to a backlog and rows sampled from it. */
export function statementCatalog(fx: BacklogFixture, sample: CatalogSample): CatalogEntry[] {
  const now = new Date(fx.to.getTime() + MINUTE);
  const lease = new Date(now.getTime() + 30_000);
  const batch = 500;
  // Outcomes at the largest batches their writers send (delivery/outcomes.ts, RENEW_BATCH): a
  // plan that holds for 500 keys did not for 2,000 (a hash join over the whole table).
  const acks = sample.owedPks.slice(0, 2000);
  const nacks = sample.owedPks.slice(0, 1000);
  const held = sample.goneClaimedPks.slice(0, RENEW_BATCH);
  const day = `messages_p${fx.to.toISOString().slice(0, 10).replaceAll("-", "")}`;
  return [
    {
      name: "claim (500 due deliveries)",
      run: (db) =>
        claimDueDeliveries(db, {
          groups: [fx.group],
          limits: [batch],
          now,
          claimer: "bench/1",
          leaseUntil: lease,
        }),
    },
    {
      name: "next due delivery (delayed messages, retries)",
      run: (db) => nextDueAfter(db, [fx.group], new Date(fx.from.getTime() - MINUTE)),
    },
    {
      name: "expiry sweep (1,000 expired, oldest first)",
      // A week on, every delivery expired: the worst case for picking an index over a scan.
      run: (db) => expireDeliveries(db, new Date(now.getTime() + 7 * 86_400_000), "bench", 1000),
    },
    {
      name: `ack (${acks.length.toLocaleString("en-US")} deliveries)`,
      byKey: true,
      run: (db) =>
        ackDeliveries(
          db,
          acks.map((messagePk) => ({
            messagePk,
            groupId: fx.group,
            attempt: 1,
            pushedAt: now,
            ackedAt: now,
          })),
          "bench",
        ),
    },
    {
      // Acks of deliveries that had ended (a push answered after it timed out at the deliver
      // limit): each probes its message's history for the ending.
      name: `late acks (${nacks.length.toLocaleString("en-US")} acks judged against the history)`,
      run: (db) =>
        ackAfterEnd(
          db,
          nacks.map((messagePk) => ({
            messagePk,
            groupId: fx.group,
            attempt: 1,
            pushedAt: null,
            ackedAt: now,
          })),
          "bench",
        ),
    },
    {
      name: `dead-lettering (${nacks.length.toLocaleString("en-US")} nacks at the deliver limit)`,
      byKey: true,
      run: (db) =>
        nackDeliveries(
          db,
          nacks.map((messagePk) => ({
            messagePk,
            groupId: fx.group,
            claimEpoch: 0,
            attempt: 100,
            pushedAt: now,
            failedAt: now,
            nextAttemptAt: now,
            deadLetter: true,
            reason: "bench",
          })),
          "bench",
        ),
    },
    {
      name: `lease renewal (${held.length.toLocaleString("en-US")} held deliveries)`,
      byKey: true,
      run: (db) =>
        renewLeases(
          db,
          fx.goneClaimer,
          held.map((messagePk) => ({ messagePk, groupId: fx.group, claimEpoch: 1 })),
          lease,
        ),
    },
    {
      name: `release of held deliveries (${held.length.toLocaleString("en-US")}: flow control, shutdown)`,
      byKey: true,
      run: (db) =>
        releaseDeliveries(
          db,
          held.map((messagePk) => ({ messagePk, groupId: fx.group, claimEpoch: 1 })),
        ),
    },
    {
      name: "declare a gone node dead (registry)",
      run: (db) => declareNodeDead(db, { nodeId: "bench-gone", now, until: lease, except: "bench/1" }),
    },
    {
      name: "takeover of a dead claimer (one batch)",
      run: (db) =>
        db.query({ text: DECLARE_CLAIMER_DEAD, values: [fx.goneClaimer, now, lease, BACKGROUND_BATCH] }),
    },
    {
      name: "claim (500 deliveries of a dead claimer)",
      run: async (db) => {
        await db.query({
          text: DECLARE_CLAIMER_DEAD,
          values: [fx.goneClaimer, now, lease, BACKGROUND_BATCH],
        });
        return claimDueDeliveries(db, {
          groups: [fx.group],
          limits: [batch],
          now,
          claimer: "bench/1",
          leaseUntil: lease,
        });
      },
    },
    { name: "claimer liveness check", run: (db) => claimerLiveness(db) },
    {
      name: "tx check claim (500 due checks)",
      run: (db) =>
        claimDueTxChecks(db, {
          groups: [fx.producerGroup],
          now,
          claimer: "bench/1",
          leaseUntil: lease,
          giveUpBefore: new Date(fx.from.getTime() - MINUTE),
          limit: batch,
        }),
    },
    {
      name: "tx check record (500 checks sent)",
      byKey: true,
      run: (db) =>
        recordTxChecks(
          db,
          sample.pendingPks.slice(0, batch).map((messagePk) => ({
            messagePk,
            claimEpoch: 0,
            sent: true,
            check: 1,
            nextCheckAt: lease,
            detail: "bench",
          })),
          { now, nodeId: "bench" },
        ),
    },
    {
      name: "tx answers (500 commits from producers)",
      byKey: true,
      run: (db) =>
        applyTxAnswers(
          db,
          sample.pendingIds.slice(0, batch).map((messageId) => ({
            messageId,
            kind: "committed" as const,
            detail: "bench",
            check: null,
          })),
          { now, nodeId: "bench", leaseUntil: lease, plan: () => [{ groupId: fx.group, claimedBy: null }] },
        ),
    },
    {
      name: "tx next check time",
      run: (db) => nextTxCheckTime(db, [fx.producerGroup], 86_400),
    },
    {
      name: "tx give-up sweep (500 oldest)",
      run: (db) =>
        giveUpTransactions(db, { storedBefore: now, now, nodeId: "bench", detail: "bench", limit: batch }),
    },
    { name: "release of tx check claims", run: (db) => releaseTxClaimsOf(db, fx.goneClaimer) },
    {
      name: "regx routing probe (SQL publishes waiting for a Regx match)",
      run: (db) => db.query(TAKE_REGX_ROUTING, [batch]),
    },
    {
      name: "retention: regx routing rows of a day (one batch)",
      run: (db) => db.query(FORGET_REGX_ROUTING_BEFORE, [fx.from, BACKGROUND_BATCH]),
    },
    {
      name: "retention: message_ids of a day (one batch)",
      run: (db) => forgetMessageIdsBatch(db, day, 0, BACKGROUND_BATCH),
    },
    {
      name: "replay selection (one batch)",
      run: (db) =>
        db.query({
          text: REPLAY_BATCH,
          // A group bound to another message type ("backlog" judged not to match): the filter runs.
          values: [
            fx.topic,
            "replayed",
            fx.from,
            now,
            now,
            lease,
            "bench",
            "bench",
            0,
            BACKGROUND_BATCH,
            ["t"],
            ["backlog"],
          ],
        }),
    },
    {
      name: "re-drive of one message",
      run: (db) =>
        redriveDelivery(db, {
          messageId: sample.messageId,
          groupId: fx.group,
          now,
          expiresAt: lease,
          nodeId: "bench",
          reason: "bench",
        }),
    },
    { name: "owed-per-group gauge", run: (db) => countOwedDeliveries(db) },
    { name: "history by message id", run: (db) => messageHistory(db, sample.messageId) },
    { name: "explain of one message", run: (db) => explainMessage(db, sample.messageId, now) },
    {
      name: "group backlogs (owed, oldest due)",
      run: (db) => groupBacklogs(db, [fx.group, "an-idle-group"]),
    },
    {
      name: "dead letters per group (capped count)",
      run: (db) => countDeadLetters(db, [fx.group, fx.producerGroup]),
    },
    { name: "pending 2PC messages (capped count)", run: (db) => countPendingTransactions(db) },
    {
      name: "dead letters of a group, filtered, one page after a cursor",
      run: (db) =>
        deadLetterPage(
          db,
          { groupId: fx.group, since: fx.from, until: now, topic: fx.topic, error: "refused" },
          { at: fx.from.toISOString(), messagePk: 0 },
          100,
        ),
    },
    {
      name: "dead letters of a group, a filter matching none",
      run: (db) =>
        deadLetterPage(db, { groupId: fx.group, since: fx.from, until: now, error: "timeout" }, null, 100),
    },
    {
      name: "history by group + time (first 1,000 rows)",
      run: (db) => groupHistory(db, fx.group, fx.from, now, 1000),
    },
    {
      // The API's next page: the index range starts at the place, not at `since`.
      name: "history by group + time, the page after a place half-way (1,000 rows)",
      run: (db) =>
        groupHistory(db, fx.group, fx.from, now, 1000, {
          atMicros: Math.round((fx.from.getTime() + now.getTime()) / 2) * 1000,
          rank: 4,
          messageId: "8".repeat(32),
        }),
    },
    {
      name: "bindings of a topic (explain of a message in shard 1+, from shard 0)",
      run: (db) => db.query({ text: TOPIC_BINDINGS_SQL, values: [fx.topic] }),
    },
    {
      name: "dead letters of a group (first 1,000)",
      run: (db) => deadLetters(db, fx.group, fx.from, now, 1000),
    },
    {
      name: "node heartbeat with its stats snapshot (primary key; nodes is tiny)",
      run: (db) =>
        heartbeatNode(db, "bench", now, {
          at: now.getTime(),
          version: "bench",
          published: 1,
          pushed: 1,
          groups: {
            [fx.group]: { consumers: 1, pushed: 1, redelivered: 0, acked: 1, nacked: 0, deadLettered: 0 },
          },
        }),
    },
    { name: "nodes with their stats (admin API; nodes is tiny)", run: (db) => listNodes(db) },
  ];
}

/** Partition upkeep needs a pool (it runs in a transaction of its own): timed separately. */
export function partitionUpkeep(pool: pg.Pool, now: Date): Promise<number> {
  return ensurePartitions(pool, now);
}
