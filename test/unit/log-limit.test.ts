import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LogRateLimiter, RateLimitedLog } from "../../src/log-limit.js";

describe("LogRateLimiter", () => {
  it("admits the first few of a key, then counts the rest for one summary per interval", () => {
    const l = new LogRateLimiter({ first: 3, intervalMs: 1000 });
    const admitted = [];
    for (let i = 0; i < 10; i++) admitted.push(l.admit("k", 100 + i));
    expect(admitted).toEqual([true, true, true, false, false, false, false, false, false, false]);
    // The summary is due one interval after the first suppressed occurrence (at 103).
    expect(l.nextDueMs()).toBe(1103);
    expect(l.takeDue(1102)).toEqual([]);
    expect(l.takeDue(1103)).toEqual([{ key: "k", suppressed: 7, total: 10, lastAtMs: 109 }]);
    expect(l.takeDue(1104)).toEqual([]);
    expect(l.nextDueMs()).toBeUndefined();
  });

  it("keeps summarising (no new burst) while the key keeps coming, and starts afresh after a quiet interval", () => {
    const l = new LogRateLimiter({ first: 2, intervalMs: 1000 });
    expect(l.admit("k", 0)).toBe(true);
    expect(l.admit("k", 1)).toBe(true);
    // 32,622 occurrences over 15 s: 2 lines, then only summaries.
    let logged = 2;
    let summaries = 0;
    for (let i = 0; i < 32_620; i++) {
      const t = 2 + Math.floor((i * 15_000) / 32_620);
      if (l.admit("k", t)) logged++;
      summaries += l.takeDue(t).length;
    }
    summaries += l.takeDue(20_000).length;
    expect(logged).toBe(2);
    expect(summaries).toBeGreaterThanOrEqual(15);
    expect(summaries).toBeLessThanOrEqual(16);
    // Quiet for an interval: the key was forgotten, the next one is logged again.
    l.takeDue(40_000);
    expect(l.admit("k", 40_000)).toBe(true);
  });

  it("counts keys separately", () => {
    const l = new LogRateLimiter({ first: 1, intervalMs: 1000 });
    expect(l.admit("a", 0)).toBe(true);
    expect(l.admit("b", 0)).toBe(true);
    expect(l.admit("a", 1)).toBe(false);
    expect(l.takeDue(2000)).toEqual([{ key: "a", suppressed: 1, total: 2, lastAtMs: 1 }]);
  });
});

describe("RateLimitedLog", () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const log = pino(
      { level: "info" },
      { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
    );
    return { log, lines };
  }

  it("writes the first lines, then one summary line with the counts and the last fields", () => {
    const { log, lines } = capture();
    let now = 0;
    const limited = new RateLimitedLog(log, { first: 2, intervalMs: 10_000 }, () => now);
    for (let i = 0; i < 100; i++) {
      limited.error(
        "publish not stored",
        { code: "KQ_STORE_FAILED", messageId: `m${i}` },
        "publish not stored",
      );
      now += 10;
    }
    expect(lines.map((l) => l.messageId)).toEqual(["m0", "m1"]);
    limited.flush(now + 10_000);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({
      level: 50,
      code: "KQ_STORE_FAILED",
      messageId: "m99",
      suppressed: 98,
      total: 100,
    });
    // Written 10 s after the last one (at 990 ms): it says when that was, not "in the last 10 s".
    expect(lines[2]!.msg).toBe(
      "publish not stored (98 more not logged one by one, the last at 1970-01-01T00:00:00.990Z)",
    );
    expect(lines[2]!.lastAt).toBe("1970-01-01T00:00:00.990Z");
    limited.close();
  });

  it("close() writes what is owed", () => {
    const { log, lines } = capture();
    const limited = new RateLimitedLog(log, { first: 0, intervalMs: 60_000 }, () => 5);
    limited.warn("x", {}, "x happened");
    limited.warn("x", {}, "x happened");
    expect(lines).toHaveLength(0);
    limited.close();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ suppressed: 2, total: 2, level: 40 });
  });
});
