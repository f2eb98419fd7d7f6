import { defineConfig } from "vitest/config";

/**
 * Test files whose assertions are timings (takeover within a lease, redelivery within ~1 s, p99
 * lateness under 1 s, handshake deadlines, ZooKeeper session expiry): they run one at a time,
 * after everything else, so that no other test file's brokers and PostgreSQL work share the two
 * cores with them. A file that starts brokers and asserts a bound on how fast something
 * happens belongs here.
 */
const TIMING_SENSITIVE = [
  "test/e2e/backlog.test.ts",
  "test/e2e/cluster.test.ts",
  "test/e2e/crash-durability.test.ts",
  "test/e2e/delivery.test.ts",
  "test/e2e/flow-control.test.ts",
  "test/e2e/hostile-connections.test.ts",
  "test/e2e/pg-failover.test.ts",
  "test/e2e/sdk-delayed.test.ts",
  "test/e2e/sdk-failover.test.ts",
  "test/e2e/sharding-down.test.ts",
  "test/e2e/sharding-fairness.test.ts",
  "test/e2e/sharding.test.ts",
  "test/e2e/takeover.test.ts",
  "test/e2e/two-nodes.test.ts",
  "test/integration/metrics-scrape.test.ts",
  "test/integration/registry/cluster.test.ts",
  "test/integration/registry/zookeeper.test.ts",
  "test/integration/server/connection-limits.test.ts",
];

const INTEGRATION = ["test/integration/**/*.test.ts", "test/e2e/**/*.test.ts"];
const DATABASE = {
  globalSetup: ["test/support/global-setup.ts"],
  testTimeout: 120_000,
  hookTimeout: 120_000,
  pool: "forks" as const,
};

export default defineConfig({
  test: {
    // Two files at a time, then the timing-sensitive ones alone (2 cores here; an integration
    // file spends most of its time waiting on brokers, PostgreSQL and ZooKeeper). The whole
    // `npm test` must stay under 10 minutes on this machine in its slow hours.
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          testTimeout: 30_000,
          // Pure logic: one module graph per worker instead of one per file (18 s -> 6 s here).
          isolate: false,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "integration",
          include: INTEGRATION,
          exclude: TIMING_SENSITIVE,
          ...DATABASE,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "timing",
          include: TIMING_SENSITIVE,
          ...DATABASE,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
