/**
 * The broker's Prometheus metrics (prom-client): counters read from the publisher and the
 * dispatcher through MetricsSource at scrape time, connection pool gauges, and the deliveries
 * still owed per group (one cheap query, cached a few seconds).
 */

import type pg from "pg";
import { Counter, collectDefaultMetrics, Gauge, Registry, Summary } from "prom-client";
import { withDeadline } from "../deadline.js";
import type { DeliveryCounters } from "../delivery/dispatcher.js";
import type { GroupDeliveryCounters } from "../delivery/group-counters.js";
import { ErrorCode, toKiteqError } from "../errors.js";
import { LATENCY_BUCKETS, type LatencyHistogram } from "../latency.js";
import type { Logger } from "../log.js";
import type { MaintenanceCounters } from "../maintenance/maintenance.js";
import type { PublishCounters } from "../publish/publisher.js";
import { shardedCountOwed } from "../store/sharded-history.js";
import type { TxCounters } from "../tx/transactions.js";
import { type GroupSample, HEARTBEAT_STALE_MS, type Sample, type Sampler } from "./sampler.js";

/** Publish group-commit statistics (Publisher.batchStats). */
export interface BatchStats {
  readonly batches: number;
  readonly items: number;
  readonly failures: number;
}

/**
 * What the metrics read from a running node, at every scrape. Counters are cumulative since the
 * node started. The broker passes its publisher, dispatcher and protocol server through it.
 */
export interface MetricsSource {
  publishCounters(): Readonly<PublishCounters>;
  deliveryCounters(): Readonly<DeliveryCounters>;
  batchStats(): BatchStats;
  /** Client connections open now (handshaken or not). */
  sessionsConnected(): number;
  /** The node's maintenance (expiry sweep, takeovers) while it was the maintenance node. */
  maintenanceCounters?(): Readonly<MaintenanceCounters>;
  /** The dispatcher's per-group counters (Dispatcher.groupCounters.all()). */
  groupCounters?(): ReadonlyMap<string, Readonly<GroupDeliveryCounters>>;
  /** 2PC checks, give-ups and decisions. */
  txCounters?(): Readonly<TxCounters>;
  /** The hot paths' latency histograms. */
  latencies?(): Readonly<Record<LatencyName, LatencyHistogram>>;
  /** A sharded store: whether each shard answers, as this node's publishes last found it. */
  shardsUp?(): readonly boolean[];
  /** This node's clock minus the database's at the last heartbeat (undefined before the first). */
  clockSkewSeconds?(): number | undefined;
  /** ZooKeeper registry: whether this node is registered now (undefined: static registry). */
  registryRegistered?(): boolean | undefined;
}

/** What each publish counter counts (a new counter fails to compile until described here). */
const PUBLISH_HELP: { readonly [K in keyof PublishCounters]: string } = {
  accepted: "Publishes stored and acknowledged true (duplicates included).",
  refused: "Publishes refused before storing (invalid, unsupported topic, rate limit, shutting down).",
  failed: "Publishes whose store transaction failed (acknowledged false).",
  fly: "Fly messages accepted (delivered without storing).",
  duplicates: "Publishes of a message already stored (acknowledged again, stored once).",
};

/** What each delivery counter counts. */
const DELIVERY_HELP: { readonly [K in keyof DeliveryCounters]: string } = {
  pushed: "Messages pushed to consumers (every attempt).",
  acked: "Pushes answered DELIVER_ACK true.",
  nacked: "Failed pushes (answered false, timed out, connection lost) scheduled for redelivery.",
  timeouts: "Pushes not answered within deliverySeconds (also counted as nacked or dead-lettered).",
  deadLettered: "Deliveries ended at the deliver limit (dead-lettered).",
  claimed: "Deliveries claimed from the deliveries table (NOTIFY, poll, takeover).",
  fastPath: "Deliveries pre-claimed at publish by this node (local fast path).",
  takenOver:
    "Claimed deliveries another claimer held: a node declared dead (takeover), or one whose lease ran out.",
  fly: "Fly messages pushed to consumers (never stored).",
  flyOverRate:
    "Fly pushes not made because their group had no rate left (its watermark): never stored, not retried.",
  leaseLapsed:
    "Held deliveries not pushed because their lease ran out first (the node was paused or cut off from the database).",
};

const BATCH_HELP: { readonly [K in keyof BatchStats]: [name: string, help: string] } = {
  batches: ["kiteq_publish_batches_total", "Publish transactions written (group commit)."],
  items: ["kiteq_publish_batch_messages_total", "Messages in the publish transactions written."],
  failures: ["kiteq_publish_batch_failures_total", "Publish transactions that failed."],
};

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * Longest a scrape waits for a figure read from the store (the backlog sample, the owed count):
 * a hung database server (a shard) must not hang /metrics, whose other figures (kiteq_shard_up
 * among them) say what is wrong. A figure not read in time is left out of that scrape.
 */
export const SCRAPE_WAIT_MS = 3_000;

/** How long the deliveries-owed figures are reused before the next query. */
export const OWED_CACHE_MS = 5000;

/** The per-group count of owed deliveries, queried at most once per OWED_CACHE_MS. */
class OwedDeliveries {
  private value: Map<string, number> = new Map();
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private pending: Promise<Map<string, number>> | undefined;

  constructor(
    private readonly pools: readonly pg.Pool[],
    private readonly log: Logger,
    private readonly ttlMs: number,
  ) {}

  /** The cached figures, refreshed first when older than the TTL; throws when the query fails. */
  get(): Promise<Map<string, number>> {
    if (Date.now() - this.fetchedAt < this.ttlMs) return Promise.resolve(this.value);
    this.pending ??= shardedCountOwed(this.pools)
      .then(
        (v) => {
          this.value = v;
          this.fetchedAt = Date.now();
          return v;
        },
        (err: unknown) => {
          // Only the store is read here: a refused connection is the store's failure, not ours.
          const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
          this.log.warn({ code: e.code, err: e.message }, "counting owed deliveries failed");
          throw e;
        },
      )
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }
}

/** Options of createMetrics. */
export interface MetricsOptions {
  source: MetricsSource;
  /** The node's pool: its gauges, and the owed-deliveries query. */
  pool: pg.Pool;
  /** Every shard's pool when the store is sharded (owed deliveries are summed over them). */
  pools?: readonly pg.Pool[];
  log: Logger;
  /** Cache of the owed-deliveries query; default OWED_CACHE_MS. */
  owedCacheMs?: number;
  /** Node.js process metrics (CPU, memory, event loop lag, GC); default true. */
  processMetrics?: boolean;
  /** The backlog sampler: per-group gauges, 2PC pending, node liveness (none without it). */
  sampler?: Sampler;
}

/** The latency histograms a node keeps. */
export type LatencyName = "publishStore" | "publishToDeliver" | "claim";

const LATENCY_HELP: { readonly [K in LatencyName]: [name: string, help: string] } = {
  publishStore: [
    "kiteq_publish_store_seconds",
    "From a validated publish to its store acknowledgement (batch wait and transaction).",
  ],
  publishToDeliver: [
    "kiteq_publish_to_deliver_seconds",
    "From store to first push: measured from the commit for fast-path deliveries, from the producer's createTime (1 s resolution, its clock) for claimed ones.",
  ],
  claim: ["kiteq_claim_seconds", "Time of one claim statement (claimDueDeliveries)."],
};

/** What each per-group counter counts (labels: group). */
const GROUP_COUNTER_HELP: { readonly [K in keyof GroupDeliveryCounters]: [name: string, help: string] } = {
  pushed: ["kiteq_group_delivered_total", "Pushes to consumers of the group by this node (every attempt)."],
  redelivered: ["kiteq_group_redelivered_total", "Pushes of attempt 2 or later."],
  acked: ["kiteq_group_acked_total", "Pushes the group acked."],
  nacked: [
    "kiteq_group_nacked_total",
    "Failed pushes scheduled for redelivery (a failed last attempt counts as dead-lettered instead).",
  ],
  deadLettered: ["kiteq_group_dead_lettered_total", "Deliveries dead-lettered at the deliver limit."],
};

/**
 * A histogram whose buckets a LatencyHistogram counted: rendered at scrape time, so the hot path
 * only increments integers.
 */
function latencyMetric(name: string, help: string, read: () => LatencyHistogram | undefined) {
  return {
    name,
    help,
    type: "histogram",
    aggregator: "sum",
    reset() {},
    get() {
      const h = read();
      const values: { value: number; labels: Record<string, string | number>; metricName: string }[] = [];
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += h?.counts[i] ?? 0;
        values.push({ value: cumulative, labels: { le }, metricName: `${name}_bucket` });
      });
      values.push({ value: h?.count ?? 0, labels: { le: "+Inf" }, metricName: `${name}_bucket` });
      values.push({ value: h?.sum ?? 0, labels: {}, metricName: `${name}_sum` });
      values.push({ value: h?.count ?? 0, labels: {}, metricName: `${name}_count` });
      return { name, help, type: "histogram", values, aggregator: "sum" };
    },
  };
}

/** A registry with every metric of one node; `registry.metrics()` renders the scrape. */
export function createMetrics(options: MetricsOptions): Registry {
  const { source, pool } = options;
  const registry = new Registry();
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });

  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  for (const [key, help] of Object.entries(PUBLISH_HELP) as [keyof PublishCounters, string][]) {
    counter(`kiteq_publish_${snake(key)}_total`, help, () => source.publishCounters()[key]);
  }
  for (const [key, help] of Object.entries(DELIVERY_HELP) as [keyof DeliveryCounters, string][]) {
    counter(`kiteq_delivery_${snake(key)}_total`, help, () => source.deliveryCounters()[key]);
  }
  for (const [key, [name, help]] of Object.entries(BATCH_HELP) as [keyof BatchStats, [string, string]][]) {
    counter(name, help, () => source.batchStats()[key]);
  }

  const maintenance = source.maintenanceCounters;
  if (maintenance !== undefined) {
    counter(
      "kiteq_delivery_expired_total",
      "Deliveries dropped because their message expired (expiry sweeps this node ran as the maintenance node).",
      () => maintenance().expired,
    );
    counter(
      "kiteq_takeovers_total",
      "Dead nodes (runs) this node declared dead when their liveness lock vanished (their deliveries are then claimed again at once).",
      () => maintenance().takeovers,
    );
    counter(
      "kiteq_takeover_checks_total",
      "2PC check claims released by takeovers.",
      () => maintenance().takeoverChecks,
    );
    new Summary({
      name: "kiteq_takeover_seconds",
      help: "Seconds from a dead node's last sign of life (its lock seen held) to its declaration (last 1,000 takeovers).",
      percentiles: [0.5, 0.99, 1],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of maintenance().takeoverSeconds) this.observe(s);
      },
    });
  }

  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  gauge("kiteq_sessions_connected", "Client connections open on this node.", () =>
    source.sessionsConnected(),
  );
  gauge("kiteq_db_pool_connections", "Connections of the node's PostgreSQL pool.", () => pool.totalCount);
  gauge("kiteq_db_pool_idle_connections", "Idle connections of the pool.", () => pool.idleCount);
  gauge("kiteq_db_pool_waiting_requests", "Requests waiting for a pool connection.", () => pool.waitingCount);

  const clockSkew = source.clockSkewSeconds;
  if (clockSkew !== undefined) {
    new Gauge({
      name: "kiteq_node_clock_skew_seconds",
      help: "This node's clock minus the database's at its last heartbeat (leases and due times use each node's clock: beyond a second or so, deliveries may be taken over early).",
      registers: [registry],
      collect() {
        const s = clockSkew();
        if (s === undefined) this.reset();
        else this.set(s);
      },
    });
  }

  const registered = source.registryRegistered;
  if (registered !== undefined) {
    new Gauge({
      name: "kiteq_registry_registered",
      help: "1 while this node is registered in ZooKeeper (clients can find it), 0 while not (an outage, a session being replaced); absent with the static registry.",
      registers: [registry],
      collect() {
        const r = registered();
        if (r === undefined) this.reset();
        else this.set(r ? 1 : 0);
      },
    });
  }

  const latencies = source.latencies;
  for (const [key, [name, help]] of Object.entries(LATENCY_HELP) as [LatencyName, [string, string]][]) {
    registry.registerMetric(
      latencyMetric(name, help, () => latencies?.()[key]) as unknown as Parameters<
        Registry["registerMetric"]
      >[0],
    );
  }
  const groupCounters = source.groupCounters;
  for (const [key, [name, help]] of Object.entries(GROUP_COUNTER_HELP) as [
    keyof GroupDeliveryCounters,
    [string, string],
  ][]) {
    new Counter({
      name,
      help,
      labelNames: ["group"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [group, c] of groupCounters?.() ?? []) this.inc({ group }, c[key]);
      },
    });
  }
  const shardsUp = source.shardsUp;
  if (shardsUp !== undefined) {
    new Gauge({
      name: "kiteq_shard_up",
      help: "1 while the shard answers this node (its publishes, and a ping every 2 s), 0 while it is taken for down (label: shard index).",
      labelNames: ["shard"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [shard, up] of shardsUp().entries()) this.set({ shard: String(shard) }, up ? 1 : 0);
      },
    });
  }
  const tx = source.txCounters;
  if (tx !== undefined) {
    counter("kiteq_tx_checks_total", "2PC check-backs sent to producers.", () => tx().checksSent);
    counter(
      "kiteq_tx_give_ups_total",
      "2PC messages rolled back because the give-up age passed.",
      () => tx().gaveUp,
    );
    counter(
      "kiteq_tx_expired_total",
      "2PC messages rolled back at a check-back found past their expiry (none is sent).",
      () => tx().expired,
    );
    counter("kiteq_tx_committed_total", "2PC messages committed by their producer.", () => tx().committed);
    counter(
      "kiteq_tx_rolled_back_total",
      "2PC messages rolled back by their producer.",
      () => tx().rolledBack,
    );
  }
  const sampler = options.sampler;
  if (sampler !== undefined) {
    const sampled = (
      name: string,
      help: string,
      labelNames: string[],
      fill: (g: Gauge<string>, s: Sample) => void,
    ) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: [registry],
        async collect() {
          this.reset();
          try {
            fill(this, await withDeadline(sampler.latest(), SCRAPE_WAIT_MS, "backlog sample"));
          } catch {
            // Logged by the sampler; left empty rather than stale.
          }
        },
      });
    const perGroup = (name: string, help: string, read: (g: GroupSample) => number) =>
      sampled(name, help, ["group"], (gauge, s) => {
        for (const [group, g] of s.groups) gauge.set({ group }, read(g));
      });
    perGroup(
      "kiteq_group_owed",
      "Deliveries owed to the group, all nodes (sampled every 5 s at most).",
      (g) => g.owed,
    );
    perGroup(
      "kiteq_group_oldest_owed_age_seconds",
      "Seconds since the earliest due time of the group's owed deliveries (0 when none is due).",
      (g) => g.oldestOwedAgeSeconds,
    );
    perGroup(
      "kiteq_group_in_flight",
      "Owed deliveries held by a node under a live lease, all nodes.",
      (g) => g.inFlight,
    );
    perGroup(
      "kiteq_group_dead_letters",
      "Messages still dead for the group (counted up to 1,000; refreshed every 15 s).",
      (g) => g.deadLetters,
    );
    sampled(
      "kiteq_tx_pending",
      "2PC messages waiting for their commit, all nodes (counted up to 10,000).",
      [],
      (g, s) => g.set(s.pendingTransactions),
    );
    sampled(
      "kiteq_nodes",
      // From the constant livenessOf uses: the text said 30 s while the code used 15 s.
      `Broker nodes by liveness (nodes table: alive, unresponsive: no heartbeat for ${HEARTBEAT_STALE_MS / 1000} s, dead: gone without a clean stop and declared dead, stopped).`,
      ["liveness"],
      (g, s) => {
        for (const [liveness, n] of Object.entries(s.nodes)) g.set({ liveness }, n);
      },
    );
  }

  const owed = new OwedDeliveries(options.pools ?? [pool], options.log, options.owedCacheMs ?? OWED_CACHE_MS);
  new Gauge({
    name: "kiteq_deliveries_owed",
    help: `Deliveries still owed per subscriber group, all nodes (refreshed every ${(options.owedCacheMs ?? OWED_CACHE_MS) / 1000} s).`,
    labelNames: ["group"],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        for (const [group, n] of await withDeadline(owed.get(), SCRAPE_WAIT_MS, "owed count"))
          this.set({ group }, n);
      } catch {
        // Logged by OwedDeliveries; the gauge is left empty rather than stale.
      }
    },
  });
  return registry;
}
