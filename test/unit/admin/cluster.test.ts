import { describe, expect, it } from "vitest";
import { buildNodeStats, clusterView } from "../../../src/admin/cluster.js";
import type { NodeRow } from "../../../src/store/groups.js";

const NOW = Date.parse("2026-12-01T12:00:00Z");
const stats = (at: number, pushed: number, consumers: number) =>
  buildNodeStats({
    at,
    version: "1.2.3",
    published: pushed * 2,
    pushed,
    counters: new Map([["g", { pushed, redelivered: 0, acked: pushed, nacked: 0, deadLettered: 0 }]]),
    consumers: new Map([["g", consumers]]),
    held: new Map([["g", consumers * 10]]),
  });
const row = (nodeId: string, heartbeatAgoMs: number, s: NodeRow["stats"], stopped = false): NodeRow => ({
  nodeId,
  address: "127.0.0.1:1",
  startedAt: new Date(NOW - 60_000),
  heartbeatAt: new Date(NOW - heartbeatAgoMs),
  stoppedAt: stopped ? new Date(NOW - heartbeatAgoMs) : null,
  declaredDead: false,
  stats: s,
});

describe("admin cluster view", () => {
  it("a heartbeat snapshot carries the deliveries held per group (the in-flight gauge sums them)", () => {
    const s = buildNodeStats({
      at: NOW,
      version: "1",
      published: 0,
      pushed: 0,
      counters: new Map(),
      consumers: new Map([["g", 1]]),
      held: new Map([
        ["g", 7],
        ["h", 2],
      ]),
    });
    expect(s.groups.g).toMatchObject({ consumers: 1, held: 7 });
    expect(s.groups.h).toMatchObject({ consumers: 0, held: 2 });
  });

  const self = {
    nodeId: "self",
    version: "9.9.9",
    consumers: new Map([["g", 2]]),
    rates: {
      node: { publishPerSecond: 1, pushPerSecond: 1 },
      groups: new Map([["g", { delivered: 1, acked: 1, nacked: 0, deadLettered: 0, redelivered: 0 }]]),
    },
  };

  it("merges live nodes' consumers and rates from their two snapshots; skips dead and stopped ones", () => {
    const view = clusterView(
      [
        row("b", 1000, { current: stats(NOW - 1000, 60, 3), previous: stats(NOW - 6000, 10, 3) }),
        row("dead", 120_000, { current: stats(NOW - 120_000, 500, 7), previous: null }),
        row("stopped", 1000, { current: stats(NOW - 1000, 500, 7), previous: null }, true),
        row("fresh", 1000, { current: stats(NOW - 1000, 5, 1), previous: null }),
        row("self", 1000, { current: stats(NOW - 1000, 999, 9), previous: null }),
      ],
      self,
      NOW,
    );
    expect(view.consumers.get("g")).toEqual({ b: 3, fresh: 1, self: 2 });
    // b: 50 pushes in 5 s; fresh has no previous snapshot yet (0); self from its own sampler.
    expect(view.groupRates.get("g")).toMatchObject({ delivered: 11, acked: 11 });
    expect(view.rates).toEqual({ publishPerSecond: 21, pushPerSecond: 11 });
    expect([...view.versions]).toEqual([
      ["b", "1.2.3"],
      ["dead", "1.2.3"],
      ["stopped", "1.2.3"],
      ["fresh", "1.2.3"],
      ["self", "9.9.9"],
    ]);
    expect([...view.nodes.keys()].sort()).toEqual(["b", "fresh", "self"]);
  });

  it("a restarted node's counters going down count as no rate, not a negative one", () => {
    const view = clusterView(
      [row("b", 1000, { current: stats(NOW - 1000, 3, 1), previous: stats(NOW - 6000, 100, 1) })],
      {
        ...self,
        consumers: new Map(),
        rates: { node: { publishPerSecond: 0, pushPerSecond: 0 }, groups: new Map() },
      },
      NOW,
    );
    expect(view.groupRates.get("g")?.delivered).toBe(0);
  });
});
