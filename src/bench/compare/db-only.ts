/**
 * The database-only reference of the burn-down: kiteq-pg's own statements with no broker, no
 * protocol and no consumer. A fresh database gets `messages` owed deliveries (stored through the
 * publish statement), then one connection claims 1,000 (CLAIM_DUE_DELIVERIES) and acks them
 * (ACK_DELIVERIES, one history row each) in turn until none is left. The broker overlaps its claims
 * with its acks, so it can exceed this figure; it cannot do less work per message.
 */
import { BROKER_POOL_SETTINGS, createPool } from "../../store/db.js";
import { ackDeliveries, claimDueDeliveries } from "../../store/deliveries.js";
import { insertPublishBatch, type PublishRecord } from "../../store/messages.js";
import type { BenchEnv } from "../environment.js";
import { storedBenchRecord } from "../kiteq-load.js";
import { nowMs, round } from "../stats.js";

/** Rows per claim, as the broker claims for one group (its prefetch). */
const CLAIM_BATCH = 1000;
const GROUP = "bench-db-only";

/** What the reference measured. */
export interface DbOnlyBurnDown {
  messages: number;
  claimBatch: number;
  consumePerSec: number;
  /** Wall time per message of each statement, microseconds. */
  claimUsPerMessage: number;
  ackUsPerMessage: number;
}

/** Run the reference on its own database of `env` (see module comment). */
export async function dbOnlyBurnDown(
  env: BenchEnv,
  messages: number,
  bodySize: number,
): Promise<DbOnlyBurnDown> {
  // The broker's session settings: the reference measures the statements as the broker runs them.
  const { url } = await env.kiteqDatabase("bench_compare_db_only");
  const pool = createPool(url, { max: 1, name: "kiteq-bench db-only", settings: BROKER_POOL_SETTINGS });
  env.defer(() => pool.end());
  const body = Buffer.alloc(bodySize, 120);
  const fillAt = new Date();
  for (let done = 0; done < messages; done += CLAIM_BATCH) {
    const records: PublishRecord[] = [];
    for (let i = 0; i < Math.min(CLAIM_BATCH, messages - done); i++)
      records.push(storedBenchRecord(fillAt, "bench-db-only", body, [GROUP]));
    await insertPublishBatch(pool, records, {
      now: fillAt,
      nodeId: "bench",
      leaseUntil: fillAt,
      firstTxCheckAt: fillAt,
    });
  }
  let claimMs = 0;
  let ackMs = 0;
  let consumed = 0;
  const start = nowMs();
  for (;;) {
    const now = new Date();
    const a = nowMs();
    const claimed = await claimDueDeliveries(pool, {
      groups: [GROUP],
      limits: [CLAIM_BATCH],
      now,
      claimer: "bench-db-only/1",
      leaseUntil: new Date(now.getTime() + 30_000),
    });
    const b = nowMs();
    claimMs += b - a;
    if (claimed.length === 0) break;
    await ackDeliveries(
      pool,
      claimed.map((c) => ({
        messagePk: c.messagePk,
        groupId: GROUP,
        attempt: 1,
        pushedAt: now,
        ackedAt: new Date(),
      })),
      "bench",
    );
    ackMs += nowMs() - b;
    consumed += claimed.length;
  }
  const seconds = (nowMs() - start) / 1000;
  return {
    messages: consumed,
    claimBatch: CLAIM_BATCH,
    consumePerSec: round(consumed / seconds, 0),
    claimUsPerMessage: round((claimMs * 1000) / Math.max(1, consumed), 1),
    ackUsPerMessage: round((ackMs * 1000) / Math.max(1, consumed), 1),
  };
}
