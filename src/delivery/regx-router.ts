/**
 * The broker's side of regx_routing (store/regx-routing.ts): messages published in SQL to a topic
 * with Regx bindings wait there for a broker's matcher. Every node routes them, on each shard:
 * woken by the `kiteq_route` notification of the publishing transaction, and every second in
 * case a notification was missed (a LISTEN connection that was down). Batches are bounded; nodes
 * never take the same row (SKIP LOCKED).
 */
import type pg from "pg";
import type { Binding } from "../binding/binding.js";
import { BindingMatcher } from "../binding/matcher.js";
import { ErrorCode, toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { RateLimitedLog } from "../log-limit.js";
import { PeriodicJob } from "../maintenance/periodic.js";
import type { InvalidBindingRow } from "../store/bindings.js";
import { routeRegxBatch } from "../store/regx-routing.js";

/** Messages routed per transaction. */
export const REGX_ROUTING_BATCH = 500;
/** Period of the check for messages whose notification was missed. */
const CHECK_MS = 1_000;

/** Routes the messages waiting for a Regx match, on every shard (see module comment). */
export class RegxRouter {
  /** Messages routed and deliveries written, for tests and logs. */
  readonly counters = { messages: 0, deliveries: 0 };
  private readonly jobs: PeriodicJob[];

  constructor(pools: readonly pg.Pool[], log: Logger) {
    const failLog = new RateLimitedLog(log, { first: 3, intervalMs: 30_000 });
    // The table's Regx bindings, as the broker matches them. A row that is not a valid binding
    // (the table is checked where bindings enter, so only a hand-edited row) matches nothing,
    // with a warning, and the others still route.
    const matcherFor = (regx: readonly Binding[]) => {
      const matcher = new BindingMatcher(regx, { cacheSize: 0 });
      return (topic: string, messageType: string) =>
        matcher.groupsFor(topic, messageType).map((b) => b.groupId);
    };
    const onInvalid = (row: InvalidBindingRow) =>
      failLog.warn(
        `invalid ${row.groupId}/${row.topic}`,
        {
          code: ErrorCode.BindingInvalid,
          group: row.groupId,
          topic: row.topic,
          pattern: row.messageType,
          err: row.reason,
        },
        "a Regx binding that is not valid matches nothing",
      );
    this.jobs = pools.map(
      (pool, shard) =>
        new PeriodicJob(
          "regx routing",
          CHECK_MS,
          async (stopped) => {
            while (!stopped()) {
              const done = await routeRegxBatch(pool, REGX_ROUTING_BATCH, matcherFor, onInvalid);
              this.counters.messages += done.messages;
              this.counters.deliveries += done.deliveries;
              if (done.messages < REGX_ROUTING_BATCH) return;
            }
          },
          (err) => {
            const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
            failLog.error(
              "regx routing",
              { code: e.code, err: e.message, ...(pools.length > 1 ? { shard } : {}) },
              "routing messages published in SQL to Regx-bound groups failed; retrying",
            );
          },
        ),
    );
  }

  /** Start, routing what waits now. */
  start(): void {
    for (const job of this.jobs) job.start(true);
  }

  /** A message waits (its notification): route now, or right after the run in flight. */
  wake(): void {
    // A run in flight may have read the table before this message's commit: run once more after it.
    for (const job of this.jobs) void job.trigger().then(() => job.trigger());
  }

  async stop(): Promise<void> {
    await Promise.all(this.jobs.map((j) => j.stop()));
  }
}
