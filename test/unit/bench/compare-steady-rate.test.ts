import { describe, expect, it } from "vitest";
import {
  carried,
  lowerRate,
  roundDownSignificant,
  steadyRate,
} from "../../../src/bench/compare/steady-rate.js";

const o = { fixedRate: 0, fraction: 0.5, minRate: 50 };

describe("steadyRate", () => {
  it("offers half of what flat-out 16x1 carried end to end, rounded down to 2 digits", () => {
    expect(steadyRate({ enqueuedPerSec: 6274, throughputPerSec: 6003 }, o)).toEqual({
      perSec: 3000,
      rule: "50% of its flat-out 16x1 rate (6,003/s)",
    });
    // Enqueue was the bottleneck: the lower of the two counts.
    expect(steadyRate({ enqueuedPerSec: 874, throughputPerSec: 900 }, o).perSec).toBe(430);
  });

  it("uses --rate for every row when given", () => {
    expect(steadyRate({ enqueuedPerSec: 874, throughputPerSec: 874 }, { ...o, fixedRate: 1000 })).toEqual({
      perSec: 1000,
      rule: "--rate, the same for every row",
    });
  });

  it("falls back to the minimum when flat out measured nothing", () => {
    expect(steadyRate(null, o).perSec).toBe(50);
    expect(steadyRate({ enqueuedPerSec: 0, throughputPerSec: 0 }, o).perSec).toBe(50);
    expect(steadyRate({ enqueuedPerSec: 60, throughputPerSec: 60 }, o).perSec).toBe(50);
  });
});

describe("roundDownSignificant", () => {
  it("keeps two significant digits", () => {
    expect(roundDownSignificant(3137)).toBe(3100);
    expect(roundDownSignificant(437)).toBe(430);
    expect(roundDownSignificant(12_999)).toBe(12_000);
    expect(roundDownSignificant(7.9)).toBe(7);
    expect(roundDownSignificant(0)).toBe(0);
  });
});

describe("carried / lowerRate", () => {
  it("a rate is carried when >= 90% was handled in the window and the drain took <= 1.5 s", () => {
    expect(carried({ offeredPerSec: 430, throughputPerSec: 429, drainSeconds: 0.1 })).toBe(true);
    expect(carried({ offeredPerSec: 430, throughputPerSec: 335, drainSeconds: 0.1 })).toBe(false);
    expect(carried({ offeredPerSec: 430, throughputPerSec: 430, drainSeconds: 4 })).toBe(false);
  });

  it("halves, and stops below the minimum", () => {
    expect(lowerRate(430, 50)).toBe(210);
    expect(lowerRate(90, 50)).toBeUndefined();
  });
});
