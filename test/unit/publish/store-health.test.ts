import { describe, expect, it } from "vitest";
import { PublishHealth } from "../../../src/publish/store-health.js";

describe("PublishHealth", () => {
  it("is fine while batches answer, stalled once one waits 5 s, fine again when it answers", () => {
    const h = new PublishHealth(5_000);
    expect(h.problem(0)).toBeUndefined();
    const a = h.begin(1_000);
    expect(h.problem(5_999)).toBeUndefined();
    expect(h.problem(6_000)).toMatch(/waited 5.0 s for PostgreSQL/);
    const b = h.begin(6_500);
    h.finished(b, 6_600);
    expect(h.problem(7_000)).toMatch(/waited 6.0 s/); // the oldest still waits
    h.finished(a, 8_000);
    expect(h.problem(8_000)).toBeUndefined();
  });

  it("reports the last failure until a batch succeeds, for 30 s at most", () => {
    const h = new PublishHealth();
    h.finished(h.begin(0), 10, "could not extend file (SQLSTATE 53100)");
    expect(h.problem(20)).toBe("the last publish batch failed: could not extend file (SQLSTATE 53100)");
    expect(h.problem(30_011)).toBeUndefined();
    h.finished(h.begin(40_000), 40_001, "x");
    h.finished(h.begin(40_002), 40_003);
    expect(h.problem(40_004)).toBeUndefined();
  });
});
