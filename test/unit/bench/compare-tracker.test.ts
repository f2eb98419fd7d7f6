import { describe, expect, it } from "vitest";
import {
  countsCell,
  countsOf,
  exactlyOnceProblems,
  PhaseRouter,
} from "../../../src/bench/compare/tracker.js";

describe("PhaseRouter and countsOf", () => {
  it("attributes each handler call to the phase that sent it, late duplicates included", () => {
    const r = new PhaseRouter();
    const a = r.begin("burn-down");
    r.close(a, 3);
    const b = r.begin("flat 16x1");
    r.close(b, 2);
    for (const seq of [0, 1, 2, 3, 4, 4]) r.seen(seq, 0, 1);
    // A late duplicate of phase a, after phase b began.
    r.seen(1, 0, 2);
    r.seen(-1, 0, 2);
    expect(countsOf(a, 0)).toEqual({
      sent: 3,
      enqueueFailed: 0,
      handled: 3,
      duplicates: 1,
      missing: 0,
      beyond: 0,
    });
    expect(countsOf(b, 0)).toEqual({
      sent: 2,
      enqueueFailed: 0,
      handled: 2,
      duplicates: 1,
      missing: 0,
      beyond: 0,
    });
    expect(r.strays).toBe(1);
  });

  it("counts a failed enqueue that was never handled as failed, not lost", () => {
    const r = new PhaseRouter();
    const p = r.begin("steady");
    r.close(p, 4);
    r.seen(0, 0, 1);
    r.seen(1, 0, 1);
    const c = countsOf(p, 1);
    expect(c.missing).toBe(1);
    expect(exactlyOnceProblems(c)).toEqual(["1 enqueue(s) failed", "1 of 3 never handled"]);
  });
});

describe("countsCell", () => {
  it("says once, or what went wrong", () => {
    const ok = { sent: 20_000, enqueueFailed: 0, handled: 20_000, duplicates: 0, missing: 0, beyond: 0 };
    expect(countsCell(ok)).toBe("20,000/20,000 once");
    expect(countsCell({ ...ok, duplicates: 2 })).toBe("20,000/20,000, 2 duplicate handler call(s)");
  });
});
