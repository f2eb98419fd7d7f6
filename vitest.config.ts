import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Two test files at once, on this 2-core machine too: an integration file spends most of its
    // time waiting (ZooKeeper sessions expiring, brokers and PostgreSQL starting, leases), and
    // the whole suite must stay under 10 minutes (2026-12-02, a slow hour of this VM: 602 s one
    // file at a time, 391 s two at once). Bounds of timing tests hold with it (kill -9 takeover
    // 1.5 s against 5 s; first redelivery 335 ms against ~1 s).
    maxWorkers: 2,
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts", "test/e2e/**/*.test.ts"],
          globalSetup: ["test/support/global-setup.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          pool: "forks",
        },
      },
    ],
  },
});
