import { describe, expect, it } from "vitest";
import { livenessOf } from "../../../src/admin/sampler.js";

describe("livenessOf", () => {
  const at = (ms: number) => new Date(ms);
  it("a node that missed three heartbeats (5 s each) is unresponsive, not alive for 30 s", () => {
    const n = { heartbeatAt: at(0), stoppedAt: null, declaredDead: false };
    expect(livenessOf(n, 14_000)).toBe("alive");
    expect(livenessOf(n, 16_000)).toBe("unresponsive");
    expect(livenessOf({ ...n, declaredDead: true }, 1_000)).toBe("dead");
    expect(livenessOf({ ...n, stoppedAt: at(1) }, 60_000)).toBe("stopped");
  });
});
