/**
 * Issue 16: a /metrics scrape at 100,000 owed deliveries over 50 groups stays under 50 ms. The
 * backlog figures come from the sampler (at most one sample every 5 s), so a scrape is a render
 * of numbers in memory; the scrape that takes a sample is timed too.
 */
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminServer, startAdminServer } from "../../src/admin/index.js";
import { GroupCounters } from "../../src/delivery/group-counters.js";
import { LatencyHistogram } from "../../src/latency.js";
import { silentLogger } from "../../src/log.js";
import { analyzeBacklogTables, buildBacklog } from "../../src/store/backlog-fixture.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { ensurePartitions } from "../../src/store/db.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { idleMetricsSource } from "../support/metrics-source.js";

const GROUPS = 50;
const OWED = 100_000;

describe(`/metrics scrape time at ${OWED.toLocaleString("en-US")} owed over ${GROUPS} groups`, () => {
  let db: TestDatabase;
  let admin: AdminServer;
  const counters = new GroupCounters();

  beforeAll(async () => {
    db = await createTestDatabase();
    const now = new Date();
    await ensurePartitions(db.pool, now);
    for (let i = 0; i < GROUPS; i++) {
      const fx = await buildBacklog(db.pool, { owed: OWED / GROUPS, now, tag: `g${i}` });
      await upsertBinding(
        db.pool,
        {
          groupId: fx.group,
          topic: fx.topic,
          messageType: "m",
          bindType: 0,
          version: "1.0.0",
          watermark: 100,
          persistent: true,
        },
        "cli",
        now,
      );
      counters.of(fx.group).pushed = i;
    }
    await analyzeBacklogTables(db.pool);
    const h = new LatencyHistogram();
    admin = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      pool: db.pool,
      log: silentLogger,
      metrics: idleMetricsSource({
        groupCounters: () => counters.all(),
        latencies: () => ({ publishStore: h, publishToDeliver: h, claim: h }),
      }),
    });
  }, 300_000);
  afterAll(async () => {
    await admin?.close();
    await db?.drop();
  });

  it("under 50 ms (median of 20 scrapes); the scrape that takes the sample is reported", {
    timeout: 30_000,
  }, async () => {
    const url = `http://127.0.0.1:${admin.address.port}/metrics`;
    const scrape = async () => {
      const t = performance.now();
      const res = await fetch(url);
      const text = await res.text();
      return { ms: performance.now() - t, text };
    };
    // A fresh server: the first scrape takes the sample (and the dead-letter counts).
    const cold = await scrape();
    const owed = cold.text
      .split("\n")
      .filter((l) => l.startsWith("kiteq_group_owed{"))
      .reduce((a, l) => a + Number(l.split(" ")[1]), 0);
    expect(owed).toBe(OWED);
    // The background timer keeps the sample fresh: a scrape after it ran reads memory only.
    await new Promise((r) => setTimeout(r, 5_500));
    const warm: number[] = [];
    for (let i = 0; i < 20; i++) warm.push((await scrape()).ms);
    warm.sort((a, b) => a - b);
    const p50 = warm[10]!;
    const max = warm[warm.length - 1]!;
    console.info(
      `metrics scrape at ${OWED} owed / ${GROUPS} groups: cold (takes the sample) ${cold.ms.toFixed(1)} ms, warm p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms, ${cold.text.length} bytes`,
    );
    expect(p50).toBeLessThan(50);
    // The cold scrape runs the sample's statements (index paths: tens of ms); it took 140-262 ms
    // in this machine's slow hours on 2026-12-03, on this code and the code before it alike. A
    // plan gone wrong at 100,000 owed takes seconds: 500 ms tells the two apart.
    expect(cold.ms).toBeLessThan(500);
  });
});
