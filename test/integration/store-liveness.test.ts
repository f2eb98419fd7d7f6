/**
 * Takeover by declaration (store/liveness.ts): a run declared dead, by its vanished lock, by the
 * registry, or by its own node starting again, has its deliveries claimed by anyone at once; a run
 * that stopped cleanly, or the caller's own run, is never declared.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensurePartitions } from "../../src/store/db.js";
import { claimDueDeliveries } from "../../src/store/deliveries.js";
import {
  claimerLiveness,
  declareNodeDead,
  forgetDeadClaimers,
  markClaimerStopped,
  takeLivenessLock,
} from "../../src/store/liveness.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const t0 = new Date("2026-11-26T10:00:00.000Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

describe("store: liveness and takeover by declaration", () => {
  let db: TestDatabase;
  const sessions: pg.Client[] = [];
  const session = async () => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    sessions.push(c);
    return c;
  };
  const lock = async (c: pg.Client, nodeId: string, claimer: string) =>
    (await takeLivenessLock(c, { nodeId, claimer, address: "127.0.0.1:1", now: t0, deadUntil: at(60_000) }))
      .taken;
  const owe = async (group: string, claimer: string) => {
    await insertPublishBatch(db.pool, [publishRecord(t0, [group])], {
      now: t0,
      nodeId: "n",
      leaseUntil: at(30_000),
      firstTxCheckAt: t0,
    });
    expect(await claim(group, claimer, at(1))).toBe(1);
  };
  const claim = async (group: string, claimer: string, now: Date) =>
    (
      await claimDueDeliveries(db.pool, {
        groups: [group],
        limits: [10],
        now,
        claimer,
        leaseUntil: new Date(now.getTime() + 30_000),
      })
    ).length;

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, t0);
  });
  afterAll(async () => {
    for (const c of sessions) await c.end().catch(() => undefined);
    await db.drop();
  });

  it("a node leaving the registry: its current run is declared dead once its lock is gone, and anyone claims its rows", async () => {
    const a = await session();
    expect(await lock(a, "zk-a", "zk-a/1")).toBe(true);
    await owe("z1", "zk-a/1");
    expect(await claim("z1", "zk-b/1", at(2))).toBe(0);
    // Alive by its lock (a node that restarted within its old ZooKeeper session, whose old
    // session's removal came late): not declared. Before, its live run was declared dead and
    // left out of every later liveness check.
    expect(
      await declareNodeDead(db.pool, { nodeId: "zk-a", now: at(2), until: at(30_002), except: "zk-b/1" }),
    ).toEqual([]);
    await a.end(); // as kill -9: the lock goes with the connection
    // The caller's own run is never declared.
    expect(
      await declareNodeDead(db.pool, { nodeId: "zk-a", now: at(2), until: at(30_002), except: "zk-a/1" }),
    ).toEqual([]);
    expect(
      await declareNodeDead(db.pool, { nodeId: "zk-a", now: at(2), until: at(30_002), except: "zk-b/1" }),
    ).toEqual(["zk-a/1"]);
    expect(await claim("z1", "zk-b/1", at(3))).toBe(1);
  });

  it("a clean stop marks the run stopped before its lock goes: never declared, never taken for dead", async () => {
    const c = await session();
    expect(await lock(c, "calm", "calm/1")).toBe(true);
    await markClaimerStopped(c, { nodeId: "calm", claimer: "calm/1", now: at(5) });
    await c.end();
    expect(
      await declareNodeDead(db.pool, { nodeId: "calm", now: at(6), until: at(30_000), except: "x/1" }),
    ).toEqual([]);
    expect((await claimerLiveness(db.pool)).map((l) => l.claimer)).not.toContain("calm/1");
  });

  it("a crashed run is found by its vanished lock; its node starting again declares it dead itself", async () => {
    const first = await session();
    expect(await lock(first, "crash", "crash/1")).toBe(true);
    await owe("c1", "crash/1");
    expect((await claimerLiveness(db.pool)).find((l) => l.claimer === "crash/1")?.alive).toBe(true);
    await first.end(); // as kill -9: the lock goes with the connection, the row still says running
    const gone = (await claimerLiveness(db.pool)).find((l) => l.claimer === "crash/1");
    expect(gone).toMatchObject({ alive: false, lockedThisEpoch: true });
    // The node's next run takes its lock: the previous run is declared dead in the same statement.
    const second = await session();
    expect(await lock(second, "crash", "crash/2")).toBe(true);
    const { rows } = await db.pool.query("SELECT claimer FROM dead_claimers WHERE claimer = 'crash/1'");
    expect(rows).toHaveLength(1);
    expect(await claim("c1", "other/1", at(2))).toBe(1);
    // Declared runs are not listed again.
    expect((await claimerLiveness(db.pool)).map((l) => l.claimer)).not.toContain("crash/1");
  });

  it("a second run of a node id whose first run is alive: refused, nothing declared, the row left to the first", async () => {
    const first = await session();
    expect(await lock(first, "twin", "twin/1")).toBe(true);
    const second = await session();
    // Before: twin/1 declared dead (its claims free to take) and the row taken by twin/2.
    expect(
      await takeLivenessLock(second, {
        nodeId: "twin",
        claimer: "twin/2",
        address: "127.0.0.1:1",
        now: t0,
        deadUntil: at(60_000),
      }),
    ).toEqual({ taken: false, heldBy: "twin/1" });
    const dead = await db.pool.query("SELECT 1 FROM dead_claimers WHERE claimer = 'twin/1'");
    expect(dead.rows).toHaveLength(0);
    const row = await db.pool.query("SELECT claimer, stopped_at FROM nodes WHERE node_id = 'twin'");
    expect(row.rows).toEqual([{ claimer: "twin/1", stopped_at: null }]);
    // What the refused run's cleanup then does changes nothing either (its claimer is not the row's).
    await markClaimerStopped(second, { nodeId: "twin", claimer: "twin/2", now: at(1) });
    expect((await db.pool.query("SELECT stopped_at FROM nodes WHERE node_id = 'twin'")).rows).toEqual([
      { stopped_at: null },
    ]);
  });

  it("forgets declarations an hour past their window that no node row names", async () => {
    await db.pool.query(
      "INSERT INTO dead_claimers (claimer, declared_at, until) VALUES ('old/1', $1, $1), ('zk-a/1', $1, $1) ON CONFLICT (claimer) DO UPDATE SET until = $1",
      [t0],
    );
    expect(await forgetDeadClaimers(db.pool, at(2 * 3_600_000))).toBeGreaterThanOrEqual(1);
    const { rows } = await db.pool.query(
      "SELECT claimer FROM dead_claimers WHERE claimer IN ('old/1', 'zk-a/1')",
    );
    // zk-a/1 is still the claimer of node zk-a's row: kept (it would be declared again otherwise).
    expect(rows.map((r) => r.claimer)).toEqual(["zk-a/1"]);
  });
});
