/**
 * A node's counters for an admin server started in a test: all zero, with what a test watches
 * given as overrides (group counters, 2PC counters, latency histograms); and such a server.
 */
import { type AdminServer, type AdminServerOptions, startAdminServer } from "../../src/admin/index.js";
import type { MetricsSource } from "../../src/admin/metrics.js";
import { GroupCounters } from "../../src/delivery/group-counters.js";
import { LatencyHistogram } from "../../src/latency.js";
import { silentLogger } from "../../src/log.js";

export function idleMetricsSource(overrides: Partial<MetricsSource> = {}): MetricsSource {
  const counters = new GroupCounters();
  const latencies = {
    publishStore: new LatencyHistogram(),
    publishToDeliver: new LatencyHistogram(),
    claim: new LatencyHistogram(),
  };
  return {
    publishCounters: () => ({ accepted: 0, refused: 0, failed: 0, fly: 0, duplicates: 0 }),
    deliveryCounters: () => ({
      pushed: 0,
      acked: 0,
      nacked: 0,
      timeouts: 0,
      deadLettered: 0,
      claimed: 0,
      fastPath: 0,
      fly: 0,
      flyOverRate: 0,
      takenOver: 0,
      leaseLapsed: 0,
    }),
    batchStats: () => ({ batches: 0, items: 0, failures: 0 }),
    sessionsConnected: () => 0,
    groupCounters: () => counters.all(),
    txCounters: () => ({ checksSent: 0, gaveUp: 0, expired: 0, committed: 0, rolledBack: 0 }),
    latencies: () => latencies,
    ...overrides,
  };
}

/**
 * An admin server for a test on `pool`: a free port, idle counters, silent log, no process
 * metrics; `extra` sets or overrides the rest (sampling, tokens, timeouts).
 */
export function startTestAdminServer(
  pool: AdminServerOptions["pool"],
  extra: Partial<AdminServerOptions> = {},
): Promise<AdminServer> {
  return startAdminServer({
    host: "127.0.0.1",
    port: 0,
    pool,
    metrics: idleMetricsSource(),
    log: silentLogger,
    processMetrics: false,
    ...extra,
  });
}
