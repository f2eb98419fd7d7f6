/**
 * The database-only references: kiteq-pg's own statements with no broker, no protocol and no
 * consumer.
 *
 * Burn-down: a fresh database gets `messages` owed deliveries (stored through the publish
 * statement), then one connection claims 1,000 (CLAIM_DUE_DELIVERIES) and acks them
 * (ACK_DELIVERIES, one history row each) in turn until none is left. The broker overlaps its claims
 * with its acks, so it can exceed this figure; it cannot do less work per message.
 *
 * Flat out awaited (16x1): P callers, each awaiting its message's publish statement (one
 * GroupCommitter, one batch at a time, as the broker writes them for a few producers), every
 * message's delivery pre-claimed as the broker's fast path stores it, and each acked once stored
 * (ACK_DELIVERIES through the broker's ack writer's window; nobody waits on it). What the
 * broker adds to this is the wire (producer, broker and consumer hops) and its own work.
 */
import { ACK_MAX_BATCH, ACK_WINDOW_MS } from "../../delivery/outcomes.js";
import { BROKER_POOL_SETTINGS, createPool } from "../../store/db.js";
import { type AckRecord, ackDeliveries, claimDueDeliveries } from "../../store/deliveries.js";
import { GroupCommitter } from "../../store/group-commit.js";
import { insertPublishBatch, type PublishRecord, type PublishResult } from "../../store/messages.js";
import type { BenchEnv } from "../environment.js";
import { storedBenchRecord } from "../kiteq-load.js";
import { nowMs, round, sleep } from "../stats.js";

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

/** What the awaited (16x1) reference measured. */
export interface DbOnlyAwaited {
  producers: number;
  seconds: number;
  /** Messages stored per second, each awaited by its caller (and acked beside). */
  perSec: number;
  /** Messages per publish statement, mean. */
  batchMean: number;
  /** Acks written per second in the same window (trails the publishes by the ack window). */
  ackedPerSec: number;
}

/** Run the awaited reference on its own database of `env` (see module comment). */
export async function dbOnlyAwaited(
  env: BenchEnv,
  options: { producers: number; seconds: number; warmupSeconds: number; bodySize: number },
): Promise<DbOnlyAwaited> {
  const { url } = await env.kiteqDatabase("bench_compare_db_only_awaited");
  // One connection for the publishes, one for the acks, as the broker's writers have.
  const publishPool = createPool(url, {
    max: 1,
    name: "kiteq-bench db-only publish",
    settings: BROKER_POOL_SETTINGS,
  });
  const ackPool = createPool(url, {
    max: 1,
    name: "kiteq-bench db-only acks",
    settings: BROKER_POOL_SETTINGS,
  });
  env.defer(() => publishPool.end());
  env.defer(() => ackPool.end());
  const claimer = "bench-db-only/1";
  const publishes = new GroupCommitter<PublishRecord, PublishResult>({
    maxBatch: 1000,
    concurrency: 1,
    write: (records) => {
      const now = new Date();
      return insertPublishBatch(publishPool, records, {
        now,
        nodeId: "bench",
        leaseUntil: new Date(now.getTime() + 30_000),
        firstTxCheckAt: now,
      });
    },
  });
  // The broker's ack writer's batch and window.
  const acks = new GroupCommitter<AckRecord, void>({
    maxBatch: ACK_MAX_BATCH,
    concurrency: 1,
    windowMs: ACK_WINDOW_MS,
    write: async (items) => {
      await ackDeliveries(ackPool, items, "bench");
      return items.map((): void => undefined);
    },
  });
  const body = Buffer.alloc(options.bodySize, 120);
  let counting = false;
  let stored = 0;
  let acked = 0;
  let stop = false;
  let failure: unknown;
  // A failed publish (the database gone, say) ends the run at once instead of after its window.
  let onFailure: () => void = () => undefined;
  const failed = new Promise<void>((resolve) => {
    onFailure = resolve;
  });
  const waitOrFail = (ms: number) => Promise.race([sleep(ms), failed]);
  const producer = async () => {
    try {
      while (!stop) {
        const now = new Date();
        const record = storedBenchRecord(now, "bench-db-only", body);
        record.deliveries = [{ groupId: GROUP, claimedBy: claimer }];
        const { pk } = await publishes.submit(record);
        if (counting) stored++;
        if (pk === undefined) continue; // a duplicate id (never, they are random): nothing to ack
        const pushedAt = new Date();
        acks.enqueue({ messagePk: pk, groupId: GROUP, attempt: 1, pushedAt, ackedAt: pushedAt }, (err) => {
          if (err === undefined) {
            if (counting) acked++;
            return;
          }
          failure ??= err;
          stop = true;
          onFailure();
        });
      }
    } catch (err) {
      failure ??= err;
      stop = true;
      onFailure();
    }
  };
  const running = Array.from({ length: options.producers }, producer);
  await waitOrFail(options.warmupSeconds * 1000);
  const batchesBefore = { ...publishes.stats };
  counting = true;
  const start = nowMs();
  await waitOrFail(options.seconds * 1000);
  counting = false;
  const seconds = (nowMs() - start) / 1000;
  const batches = publishes.stats.batches - batchesBefore.batches;
  const items = publishes.stats.items - batchesBefore.items;
  stop = true;
  await Promise.all(running);
  await acks.drain();
  if (failure !== undefined) throw failure;
  return {
    producers: options.producers,
    seconds: round(seconds, 1),
    perSec: round(stored / seconds, 0),
    batchMean: round(items / Math.max(1, batches), 1),
    ackedPerSec: round(acked / seconds, 0),
  };
}
