import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ClockSkewWatch, skewOf } from "../../../src/server/clock-skew.js";

function watch() {
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: "info" },
    { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
  );
  return { lines, w: new ClockSkewWatch(log) };
}

/** A heartbeat at node time `at` with a round trip of `rtt` ms, the database `skew` ms behind the node. */
const reading = (at: number, skew: number, rtt = 2) => ({
  sentMs: at,
  receivedMs: at + rtt,
  databaseMs: at + rtt / 2 - skew,
});

describe("clock skew against the database", () => {
  it("is the node's time half-way through the round trip minus the database's, within half the round trip", () => {
    expect(skewOf({ sentMs: 1000, receivedMs: 1010, databaseMs: 905 })).toEqual({
      skewMs: 100,
      uncertaintyMs: 5,
    });
    expect(skewOf({ sentMs: 1000, receivedMs: 1000, databaseMs: 3000 })).toEqual({
      skewMs: -2000,
      uncertaintyMs: 0,
    });
  });

  it("in step: nothing logged, the gauge reads the skew", () => {
    const { lines, w } = watch();
    expect(w.skewSeconds).toBeUndefined();
    w.observe(reading(0, 40));
    w.observe(reading(5000, -300));
    expect(lines).toEqual([]);
    expect(w.skewSeconds).toBeCloseTo(-0.3, 6);
  });

  it("off by more than a second: one warning saying which way and what it does; one line when back in step", () => {
    const { lines, w } = watch();
    w.observe(reading(0, 4000));
    w.observe(reading(5000, 4100));
    w.observe(reading(10000, 3900));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, code: "KQ_CLOCK_SKEW", skewSeconds: 4 });
    expect(String(lines[0]!.msg)).toMatch(
      /4 s ahead of the database's.*take other nodes' deliveries over before their leases end/,
    );
    // Hovering just under the threshold is not yet back in step (no line at every heartbeat).
    w.observe(reading(15000, 900));
    expect(lines).toHaveLength(1);
    w.observe(reading(20000, 10));
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({
      level: 30,
      code: "KQ_CLOCK_SKEW",
      msg: "this node's clock is in step with the database's again",
    });
    w.observe(reading(25000, -2500));
    expect(lines).toHaveLength(3);
    expect(String(lines[2]!.msg)).toMatch(
      /2.5 s behind the database's.*other nodes may take its deliveries over/,
    );
  });

  it("a slow round trip does not read as skew: only what is beyond its uncertainty counts", () => {
    const { lines, w } = watch();
    // 3 s round trip (a stalled database): the database's time may be anywhere in it.
    w.observe({ sentMs: 0, receivedMs: 3000, databaseMs: 200 });
    expect(lines).toEqual([]);
  });
});
