/** RefusalLog: the first few of a kind one by one, then one summary line per interval. */
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RefusalLog } from "../../../src/server/refusal-log.js";

function recording() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "warn" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("RefusalLog", () => {
  it("logs a burst one by one, counts the rest, and sums them up once per interval", () => {
    vi.useFakeTimers();
    const { log, lines } = recording();
    const r = new RefusalLog(log, 10_000, 3);
    for (let i = 0; i < 1000; i++) r.warn("limit", { peer: `p${i}` }, "connection refused");
    expect(lines).toHaveLength(3);
    expect(r.suppressed("limit")).toBe(997);
    vi.advanceTimersByTime(10_000);
    expect(lines).toHaveLength(4);
    expect(lines[3]).toMatchObject({ suppressed: 997, peer: "p999" });
    expect(String(lines[3]?.msg)).toMatch(/997 more in the last 10 s/);
    // A new interval starts with a new burst.
    r.warn("limit", { peer: "again" }, "connection refused");
    expect(lines).toHaveLength(5);
    vi.advanceTimersByTime(10_000);
    expect(lines).toHaveLength(5); // nothing suppressed, no summary
  });

  it("counts kinds apart and flushes pending summaries on stop", () => {
    vi.useFakeTimers();
    const { log, lines } = recording();
    const r = new RefusalLog(log, 10_000, 1);
    r.warn("a", {}, "a refused");
    r.warn("a", {}, "a refused");
    r.warn("b", {}, "b refused");
    expect(lines.map((l) => l.msg)).toEqual(["a refused", "b refused"]);
    r.stop();
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ suppressed: 1 });
  });
});
