/**
 * A node whose clock is off from the database's says so (leases and due times are written with
 * each node's clock: one running ahead takes the others' deliveries over before their leases
 * end). Before, nothing did: no log line, no metric.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/store/embedded.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const SHIFT = path.resolve(import.meta.dirname, "../support/shift-clock.mjs");

describe("e2e: a node's clock against the database's", () => {
  let db: TestDatabase;
  const brokers: BrokerProcess[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    for (const b of brokers) await b.stop();
    await db?.drop();
  });

  const skewGauge = async (admin: number) => {
    const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    const m = /^kiteq_node_clock_skew_seconds (\S+)$/m.exec(text);
    return m === null ? undefined : Number(m[1]);
  };

  it("a node 5 s ahead logs KQ_CLOCK_SKEW once and its gauge reads it; a node in step says nothing", async () => {
    const [adminAhead, adminInStep] = [await freePort(), await freePort()];
    const ahead = await startBrokerProcess(["--db", db.url, "--node-id", "ahead"], {
      admin: `127.0.0.1:${adminAhead}`,
      env: { NODE_OPTIONS: `--import=${SHIFT}`, KQ_TEST_CLOCK_OFFSET_MS: "5000" },
    });
    brokers.push(ahead);
    const inStep = await startBrokerProcess(["--db", db.url, "--node-id", "in-step"], {
      admin: `127.0.0.1:${adminInStep}`,
    });
    brokers.push(inStep);
    const skewLines = (b: BrokerProcess) => b.logs.filter((l) => l.code === "KQ_CLOCK_SKEW");
    await expect.poll(() => skewLines(ahead).length, { timeout: 15_000 }).toBe(1);
    expect(String(skewLines(ahead)[0]!.msg)).toMatch(/clock is 5 s ahead of the database's/);
    const gauge = await skewGauge(adminAhead);
    expect(gauge).toBeGreaterThan(4.5);
    expect(gauge).toBeLessThan(5.5);
    expect(Math.abs((await skewGauge(adminInStep))!)).toBeLessThan(0.5);
    // A few heartbeats later (every 5 s): still one line each way.
    await new Promise((r) => setTimeout(r, 6000));
    expect(skewLines(ahead)).toHaveLength(1);
    expect(skewLines(inStep)).toHaveLength(0);
  }, 60_000);
});
