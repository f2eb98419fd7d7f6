import { describe, expect, it } from "vitest";
import { type PushCandidate, pickConnection, warmupWeight } from "../../../src/delivery/warmup.js";

/** mulberry32: a small seeded PRNG so the statistics below are reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const warm = (conn: string, inFlight = 0): PushCandidate<string> => ({
  conn,
  connectedAtMs: 0,
  warmingupSec: 0,
  inFlight,
});

describe("warmupWeight", () => {
  it("ramps linearly from 0 to 1 over warmingupSec", () => {
    expect(warmupWeight(1_000, 10, 1_000)).toBe(0);
    expect(warmupWeight(1_000, 10, 2_000)).toBeCloseTo(0.1);
    expect(warmupWeight(1_000, 10, 6_000)).toBeCloseTo(0.5);
    expect(warmupWeight(1_000, 10, 10_999)).toBeCloseTo(0.9999);
    expect(warmupWeight(1_000, 10, 11_000)).toBe(1);
    expect(warmupWeight(1_000, 10, 1_000_000)).toBe(1);
  });

  it("is 1 without warm-up and 0 before the connection time", () => {
    expect(warmupWeight(1_000, 0, 1_000)).toBe(1);
    expect(warmupWeight(1_000, -5, 0)).toBe(1);
    expect(warmupWeight(1_000, 10, 500)).toBe(0);
  });
});

describe("pickConnection", () => {
  it("returns undefined without candidates", () => {
    expect(pickConnection([], 0)).toBeUndefined();
  });

  it("prefers the connection with the fewest pushes in flight", () => {
    expect(pickConnection([warm("a", 5), warm("b", 2), warm("c", 9)], 0, () => 0.5)).toBe("b");
  });

  it("spreads ties evenly", () => {
    const random = seeded(7);
    const counts = new Map<string, number>();
    const candidates = [warm("a"), warm("b"), warm("c")];
    for (let i = 0; i < 30_000; i++) {
      const c = pickConnection(candidates, 0, random) as string;
      counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    for (const name of ["a", "b", "c"]) {
      expect(counts.get(name)).toBeGreaterThan(9_400);
      expect(counts.get(name)).toBeLessThan(10_600);
    }
  });

  it("chooses a warming connection with probability elapsed / warmingupSec", () => {
    // "old" is busy, so "new" wins whenever it passes its warm-up draw.
    for (const [elapsedMs, expected] of [
      [1_000, 0.1],
      [5_000, 0.5],
      [9_000, 0.9],
    ] as const) {
      const random = seeded(42 + elapsedMs);
      const candidates = [warm("old", 100), { conn: "new", connectedAtMs: 0, warmingupSec: 10, inFlight: 0 }];
      const n = 20_000;
      let chosen = 0;
      for (let i = 0; i < n; i++) if (pickConnection(candidates, elapsedMs, random) === "new") chosen++;
      // 5 standard deviations of a binomial(n, p) proportion.
      const tolerance = 5 * Math.sqrt((expected * (1 - expected)) / n);
      expect(Math.abs(chosen / n - expected)).toBeLessThan(tolerance);
    }
  });

  it("never chooses a connection at weight 0 while another can take the push", () => {
    const candidates = [
      warm("old", 1_000),
      { conn: "new", connectedAtMs: 5_000, warmingupSec: 10, inFlight: 0 },
    ];
    for (let i = 0; i < 100; i++) expect(pickConnection(candidates, 5_000, Math.random)).toBe("old");
  });

  it("skips the push when every candidate is warming and all lose their draw (KiteQ's rule)", () => {
    const candidates = [
      { conn: "a", connectedAtMs: 0, warmingupSec: 10, inFlight: 0 }, // weight 0.2
      { conn: "b", connectedAtMs: 0, warmingupSec: 4, inFlight: 3 }, // weight 0.5
      { conn: "c", connectedAtMs: 1_000, warmingupSec: 10, inFlight: 0 }, // weight 0.1
    ];
    // Before: "b" (the best-weighted), so a group of warming consumers got its full rate.
    expect(pickConnection(candidates, 2_000, () => 0.99)).toBeUndefined();
    // A lone warming consumer at weight 0.3 takes about 30% of the draws.
    const lone = [{ conn: "x", connectedAtMs: 0, warmingupSec: 10, inFlight: 0 }];
    let taken = 0;
    for (let i = 0; i < 10_000; i++) if (pickConnection(lone, 3_000) === "x") taken++;
    expect(taken).toBeGreaterThan(2_700);
    expect(taken).toBeLessThan(3_300);
  });

  it("returns undefined when every candidate is at weight 0", () => {
    const candidates = [
      { conn: "a", connectedAtMs: 1_000, warmingupSec: 10, inFlight: 0 },
      { conn: "b", connectedAtMs: 2_000, warmingupSec: 10, inFlight: 0 },
    ];
    expect(pickConnection(candidates, 1_000, () => 0)).toBeUndefined();
  });

  it("draws once per warming candidate in order, then once to break a tie", () => {
    const draws: number[] = [0.05, 0.9, 0.6];
    let calls = 0;
    const random = () => draws[calls++] ?? 0;
    const candidates = [
      { conn: "a", connectedAtMs: 0, warmingupSec: 10, inFlight: 0 }, // weight 0.5: 0.05 passes
      warm("b"), // warm: no draw
      { conn: "c", connectedAtMs: 0, warmingupSec: 10, inFlight: 0 }, // weight 0.5: 0.9 fails
    ];
    // Tie between a and b, broken by 0.6 -> index 1 -> b.
    expect(pickConnection(candidates, 5_000, random)).toBe("b");
    expect(calls).toBe(3);
  });
});
