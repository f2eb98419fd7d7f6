import { describe, expect, it } from "vitest";
import type { SystemResult } from "../../../src/bench/compare/phases.js";
import {
  acceptanceChecks,
  acceptanceOverRounds,
  advantage,
  advantageTables,
  ratio,
} from "../../../src/bench/compare/ratios.js";

const counts = { sent: 1, enqueueFailed: 0, handled: 1, duplicates: 0, missing: 0, beyond: 0 };
const lat = (p50: number, p99: number) => ({ count: 100, mean: p50, p50, p95: p99, p99, max: p99 });

function row(
  name: string,
  f: { burn: number; flat: number; p99: number; pipe: number; db: number; rss: number; cpu?: number },
) {
  const flat = (rate: number) => ({
    load: "",
    inFlight: 16,
    enqueuedPerSec: rate,
    throughputPerSec: rate,
    latencyMs: lat(f.p99 / 2, f.p99),
    cpu: null,
    backlogAtEnd: 0,
    drainSeconds: 0,
    counts,
  });
  const r: SystemResult = {
    name,
    version: `${name} 1.0.0`,
    caps: `${name} caps`,
    settings: {},
    warmUp: null,
    burnDown: {
      fill: "",
      fillSeconds: 1,
      fillPerSec: 1,
      consumeSeconds: 1,
      throughputPerSec: f.burn,
      cpu: f.cpu === undefined ? null : { database: f.cpu, system: 0, bench: 0, total: f.cpu },
      counts,
    },
    flatAwaited: flat(f.flat),
    flatPipelined: flat(f.pipe),
    steady: null,
    footprint: {
      databaseBytes: f.db,
      retention: "",
      rssOf: "",
      processes: [{ role: "consumer", peakRssKb: f.rss }],
      peakRssKb: f.rss,
    },
    duplicates: 0,
    missing: 0,
    strays: 0,
    failures: [],
  };
  return r;
}

const uncapped = row("kiteq-pg-uncapped", {
  burn: 30_000,
  flat: 5000,
  p99: 10,
  pipe: 12_000,
  db: 60,
  rss: 400,
  cpu: 40,
});
const capped = row("kiteq-pg", { burn: 6000, flat: 3300, p99: 18, pipe: 6000, db: 62, rss: 390 });
const notify = row("pg-boss (NOTIFY)", { burn: 9000, flat: 600, p99: 80, pipe: 900, db: 12, rss: 160 });
const poll = row("pg-boss (poll 0.5 s)", { burn: 10_000, flat: 500, p99: 600, pipe: 800, db: 12, rss: 150 });
const graphile = row("graphile-worker", {
  burn: 12_000,
  flat: 900,
  p99: 40,
  pipe: 1000,
  db: 10,
  rss: 150,
  cpu: 100,
});
const all = [uncapped, capped, notify, poll, graphile];

describe("ratio", () => {
  it("is null when a figure is missing or the divisor is not positive", () => {
    expect(ratio(10, 4)).toBe(2.5);
    expect(ratio(null, 4)).toBeNull();
    expect(ratio(10, 0)).toBeNull();
    expect(ratio(10, undefined)).toBeNull();
  });
});

describe("advantage", () => {
  it("is > 1 when kiteq-pg is better: throughput its / peer's, latency and footprint peer's / its", () => {
    const a = advantage(uncapped, graphile);
    expect(a.burnDown).toBe(2.5);
    expect(a.flatAwaited).toBe(5.56);
    expect(a.flatAwaitedP99).toBe(4);
    expect(a.flatPipelined).toBe(12);
    expect(a.databaseBytes).toBe(0.17);
    expect(a.peakRss).toBe(0.38);
    expect(a.steadyP50).toBeNull();
    // CPU per message: the peer's / its (100 us vs 40 us); unknown where a row has none.
    expect(a.burnDownCpu).toBe(2.5);
    expect(a.flatAwaitedCpu).toBeNull();
    expect(advantage(uncapped, poll).burnDownCpu).toBeNull();
  });
});

describe("advantageTables", () => {
  it("compares every peer row with both kiteq-pg rows, uncapped first", () => {
    const t = advantageTables(all);
    expect(t.map((x) => x.baseline)).toEqual(["kiteq-pg-uncapped", "kiteq-pg"]);
    expect(t[1]!.caps).toBe("kiteq-pg caps");
    expect(t[0]!.peers.map((p) => p.name)).toEqual([
      "pg-boss (NOTIFY)",
      "pg-boss (poll 0.5 s)",
      "graphile-worker",
    ]);
  });

  it("has nothing to compare without peers", () => {
    expect(advantageTables([uncapped, capped])).toEqual([]);
  });
});

describe("acceptanceChecks", () => {
  it("checks exactly-once, the flat 16x1 ratio and p99 of each kiteq-pg row, and burn-down per peer", () => {
    const checks = acceptanceChecks(all);
    const by = Object.fromEntries(checks.map((c) => [c.check, c]));
    expect(by["exactly once in every phase of every row"]!.ok).toBe(true);
    expect(by["flat 16x1: kiteq-pg-uncapped handled/s >= 5x every peer row"]).toEqual({
      check: "flat 16x1: kiteq-pg-uncapped handled/s >= 5x every peer row",
      value: "lowest 5.56x (graphile-worker)",
      ok: true,
      measure: 5.56,
      bound: { atLeast: 5 },
      overRounds: "median",
    });
    expect(by["flat 16x1: kiteq-pg handled/s >= 5x every peer row"]!.ok).toBe(false);
    expect(by["flat 16x1: kiteq-pg-uncapped publish-to-handler p99 <= 15 ms"]!.ok).toBe(true);
    expect(by["flat 16x1: kiteq-pg publish-to-handler p99 <= 15 ms"]!.ok).toBe(false);
    expect(by["burn-down: kiteq-pg-uncapped >= 1.5x graphile-worker"]).toMatchObject({
      value: "2.5x",
      ok: true,
    });
    expect(by["burn-down: kiteq-pg-uncapped >= 3x pg-boss (NOTIFY)"]).toMatchObject({
      value: "3.33x",
      ok: true,
    });
    expect(by["burn-down: kiteq-pg-uncapped >= 3x pg-boss (poll 0.5 s)"]).toMatchObject({
      value: "3x",
      ok: true,
    });
  });

  it("fails exactly-once when any row reported a failure", () => {
    const bad = { ...graphile, failures: ["steady: 1 duplicate handler call(s)"] };
    const c = acceptanceChecks([uncapped, bad]).find((x) => x.check.startsWith("exactly once"))!;
    expect(c).toMatchObject({ ok: false, value: "not: graphile-worker" });
  });
});

describe("acceptanceOverRounds", () => {
  const withFlat = (r: SystemResult, flat: number): SystemResult => ({
    ...r,
    flatAwaited: { ...r.flatAwaited!, throughputPerSec: flat },
  });
  const by = (checks: ReturnType<typeof acceptanceOverRounds>, name: string) =>
    checks.find((c) => c.check === name)!;
  const ratioCheck = "flat 16x1: kiteq-pg-uncapped handled/s >= 5x every peer row";

  it("holds each ratio's median over the rounds to its bound, so one slow round does not decide", () => {
    // graphile-worker's 16x1 is the closest peer: 5,000 / 900, then 4,000 / 900 (a slow round).
    const rounds = [all, [withFlat(uncapped, 4000), ...all.slice(1)], all].map((r) => acceptanceChecks(r));
    const c = by(acceptanceOverRounds(rounds), ratioCheck);
    expect(c.rounds).toEqual([
      "lowest 5.56x (graphile-worker)",
      "lowest 4.44x (graphile-worker)",
      "lowest 5.56x (graphile-worker)",
    ]);
    expect(c).toMatchObject({ median: 5.56, ok: true });
    // Two slow rounds of three: the median misses.
    const slow = [withFlat(uncapped, 4000), ...all.slice(1)];
    expect(
      by(acceptanceOverRounds([slow, all, slow].map((r) => acceptanceChecks(r))), ratioCheck),
    ).toMatchObject({ median: 4.44, ok: false });
  });

  it("takes the median of an even count as the mean of the middle two, and p99's against its ceiling", () => {
    const rounds = [all, [withFlat(uncapped, 4000), ...all.slice(1)]].map((r) => acceptanceChecks(r));
    const checks = acceptanceOverRounds(rounds);
    expect(by(checks, ratioCheck)).toMatchObject({ median: 5, ok: true });
    expect(by(checks, "flat 16x1: kiteq-pg publish-to-handler p99 <= 15 ms")).toMatchObject({
      median: 18,
      ok: false,
    });
  });

  it("fails exactly-once when any one round failed it", () => {
    const bad = { ...graphile, failures: ["steady: 1 duplicate handler call(s)"] };
    const rounds = [all, [...all.slice(0, 4), bad], all].map((r) => acceptanceChecks(r));
    expect(by(acceptanceOverRounds(rounds), "exactly once in every phase of every row")).toMatchObject({
      rounds: ["yes", "not: graphile-worker", "yes"],
      median: 1,
      ok: false,
    });
  });

  it("leaves a check unjudged when a round did not measure it", () => {
    const missing = [{ ...uncapped, flatAwaited: null }, ...all.slice(1)];
    const rounds = [all, missing, all].map((r) => acceptanceChecks(r));
    expect(by(acceptanceOverRounds(rounds), ratioCheck)).toMatchObject({ median: null, ok: null });
  });

  it("keeps each round in its own column when a round was cut short", () => {
    // The second round stopped after its first row: only its exactly-once check exists.
    const cut = acceptanceChecks([uncapped]).slice(0, 1);
    const rounds = [acceptanceChecks(all), cut, acceptanceChecks(all)];
    const c = by(acceptanceOverRounds(rounds), ratioCheck);
    expect(c.rounds).toEqual(["lowest 5.56x (graphile-worker)", "-", "lowest 5.56x (graphile-worker)"]);
    expect(c).toMatchObject({ median: null, ok: null });
  });
});
