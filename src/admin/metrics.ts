/**
 * The broker's Prometheus metrics (prom-client): counters read from the publisher and the
 * dispatcher through MetricsSource at scrape time, connection pool gauges, and the deliveries
 * still owed per group (one cheap query, cached a few seconds).
 */
import type pg from "pg";
import { Counter, collectDefaultMetrics, Gauge, Registry, Summary } from "prom-client";
import type { DeliveryCounters } from "../delivery/dispatcher.js";
import type { GroupDeliveryCounters } from "../delivery/group-counters.js";
import { toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import type { MaintenanceCounters } from "../maintenance/maintenance.js";
import type { PublishCounters } from "../publish/publisher.js";
import { countOwedDeliveries } from "../store/deliveries.js";

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
  fly: "Fly messages pushed to consumers (never stored).",
};

const BATCH_HELP: { readonly [K in keyof BatchStats]: [name: string, help: string] } = {
  batches: ["kiteq_publish_batches_total", "Publish transactions written (group commit)."],
  items: ["kiteq_publish_batch_messages_total", "Messages in the publish transactions written."],
  failures: ["kiteq_publish_batch_failures_total", "Publish transactions that failed."],
};

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** How long the deliveries-owed figures are reused before the next query. */
export const OWED_CACHE_MS = 5000;

/** The per-group count of owed deliveries, queried at most once per OWED_CACHE_MS. */
class OwedDeliveries {
  private value: Map<string, number> = new Map();
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private pending: Promise<Map<string, number>> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly ttlMs: number,
  ) {}

  /** The cached figures, refreshed first when older than the TTL; throws when the query fails. */
  get(): Promise<Map<string, number>> {
    if (Date.now() - this.fetchedAt < this.ttlMs) return Promise.resolve(this.value);
    this.pending ??= countOwedDeliveries(this.pool)
      .then(
        (v) => {
          this.value = v;
          this.fetchedAt = Date.now();
          return v;
        },
        (err: unknown) => {
          const e = toKiteqError(err);
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
  log: Logger;
  /** Cache of the owed-deliveries query; default OWED_CACHE_MS. */
  owedCacheMs?: number;
  /** Node.js process metrics (CPU, memory, event loop lag, GC); default true. */
  processMetrics?: boolean;
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
      "Dead nodes (runs) whose claims this node released when their liveness lock vanished.",
      () => maintenance().takeovers,
    );
    counter(
      "kiteq_takeover_deliveries_total",
      "Deliveries released by takeovers.",
      () => maintenance().takeoverDeliveries,
    );
    counter(
      "kiteq_takeover_checks_total",
      "2PC check claims released by takeovers.",
      () => maintenance().takeoverChecks,
    );
    new Summary({
      name: "kiteq_takeover_seconds",
      help: "Seconds from a dead node's last sign of life (its lock seen held) to the release of its claims (last 1,000 takeovers).",
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

  const owed = new OwedDeliveries(pool, options.log, options.owedCacheMs ?? OWED_CACHE_MS);
  new Gauge({
    name: "kiteq_deliveries_owed",
    help: `Deliveries still owed per subscriber group, all nodes (refreshed every ${(options.owedCacheMs ?? OWED_CACHE_MS) / 1000} s).`,
    labelNames: ["group"],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        for (const [group, n] of await owed.get()) this.set({ group }, n);
      } catch {
        // Logged by OwedDeliveries; the gauge is left empty rather than stale.
      }
    },
  });
  return registry;
}
