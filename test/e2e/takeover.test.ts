/**
 * Liveness locks and the maintenance node (issues 11 and 13), with broker processes:
 * - kill -9 of the node holding the maintenance lock: the other runs the next sweep within one
 *   lease;
 * - kill -9 of a node holding deliveries in flight (ZooKeeper session and lease both 30 s): the
 *   other node redelivers them within about a second, by the dead node's vanished lock;
 * - SIGSTOP for 5 s: nobody takes the paused node's claims, and it carries on after SIGCONT;
 * - PostgreSQL restarted under two nodes: nobody is declared dead, both take their locks again.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBinding } from "../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { silentLogger } from "../../src/log.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { createPool, ensurePartitions, runMigrations } from "../../src/store/db.js";
import { freePort, startEmbeddedPostgres } from "../../src/store/embedded.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const binding = (groupId: string, topic: string) =>
  createBinding({ groupId, topic, messageType: "m", bindType: 0, watermark: 6000, persistent: true });

function logged(b: BrokerProcess, msg: string): boolean {
  return b.logs.some((l) => typeof l.msg === "string" && l.msg.includes(msg));
}

describe("e2e: takeover and the maintenance node", () => {
  let db: TestDatabase;
  const brokers: BrokerProcess[] = [];
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    for (const b of brokers) await b.kill();
    await db.drop();
  });

  /** The claimer (node id and run) a node's liveness row names now. */
  const claimerOf = async (nodeId: string): Promise<string> => {
    const { rows } = await db.pool.query<{ claimer: string }>(
      "SELECT claimer FROM nodes WHERE node_id = $1",
      [nodeId],
    );
    expect(rows).toHaveLength(1);
    return rows[0]!.claimer;
  };

  const start = async (nodeId: string, extra: string[] = [], url = db.url) => {
    const b = await startBrokerProcess([
      "--db",
      url,
      "--node-id",
      nodeId,
      "--recover-seconds",
      "1",
      "--recieve-permits-per-second",
      "0",
      ...extra,
    ]);
    brokers.push(b);
    return b;
  };

  it("kill -9 of the maintenance node: the other runs the next expiry sweep within one lease", async () => {
    const lease = 3;
    const a = await start("lead-a", ["--lease-seconds", String(lease)]);
    await waitFor(() => logged(a, "cluster-wide maintenance"), 5000, "node A leads");
    const b = await start("lead-b", ["--lease-seconds", String(lease)]);
    await new Promise((r) => setTimeout(r, 500));
    expect(logged(b, "cluster-wide maintenance")).toBe(false);
    await a.kill();
    const killedAt = Date.now();
    // A delivery that expired: only a sweep by the node that leads now ends it.
    const now = new Date();
    await ensurePartitions(db.pool, now);
    const rec = publishRecord(now, ["sweep-me"], { expiresAt: new Date(now.getTime() + 200) });
    await insertPublishBatch(db.pool, [rec], {
      now,
      nodeId: "test",
      leaseUntil: now,
      firstTxCheckAt: now,
    });
    await waitFor(
      async () => {
        const { rows } = await db.pool.query(
          "SELECT node_id FROM message_events WHERE group_id = 'sweep-me' AND kind = 'expired'",
        );
        return rows.length === 1 && rows[0].node_id === "lead-b";
      },
      lease * 1000 + 2000,
      "node B's sweep",
    );
    expect(Date.now() - killedAt).toBeLessThan(lease * 1000);
    expect(logged(b, "cluster-wide maintenance")).toBe(true);
    await b.stop();
  });

  it("kill -9 of a node with deliveries in flight (lease 30 s): redelivered by the other node within ~1 s", async () => {
    await upsertBinding(db.pool, binding("slow", "kt"), "cli", new Date());
    const a = await start("kill-a", ["--lease-seconds", "30", "--delivery-seconds", "20"]);
    const b = await start("kill-b", ["--lease-seconds", "30", "--delivery-seconds", "20"]);
    // A consumer on A that never answers holds the deliveries in flight there.
    const onA = await recordingConsumer(a.port, "slow", () => "ignore");
    conns.push(onA.conn);
    const producer = await KiteqConnection.connect({
      host: a.host,
      port: a.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    conns.push(producer);
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const h = buildHeader({ topic: "kt", messageType: "m", groupId: "p" });
      expect((await producer.publish(h, "x")).status).toBe(true);
      ids.push(h.messageId);
    }
    await waitFor(() => onA.received.length === 50, 10_000, "50 pushes on node A");
    // And a 2PC message whose check node A holds claimed (as in the middle of a check pass).
    const tx = buildHeader({ topic: "kt", messageType: "m", groupId: "p", commit: false });
    expect((await producer.publish(tx, "tx")).status).toBe(true);
    const { rowCount } = await db.pool.query(
      `UPDATE pending_transactions SET claimed_by = (SELECT claimer FROM nodes WHERE node_id = 'kill-a'),
              lease_until = now() + interval '1 hour' WHERE message_id = $1`,
      [tx.messageId],
    );
    expect(rowCount).toBe(1);
    const onB = await recordingConsumer(b.port, "slow", () => true);
    conns.push(onB.conn);
    const claimerOfA = await claimerOf("kill-a");
    await a.kill();
    const killedAt = Date.now();
    await waitFor(() => onB.received.length > 0, 10_000, "first redelivery on node B");
    const firstAfterMs = Date.now() - killedAt;
    await waitFor(() => new Set(onB.ids()).size === 50, 10_000, "all 50 redelivered");
    expect(new Set(onB.ids())).toEqual(new Set(ids));
    // 30 s lease, no ZooKeeper: only the vanished liveness lock can explain this.
    expect(firstAfterMs).toBeLessThan(3000);
    // This test's dead node: an earlier test's killed node may be declared dead by B too.
    const takeover = b.logs.find((l) => l.code === "KQ_TAKEOVER" && l.claimer === claimerOfA);
    expect(takeover?.checks).toBe(1);
    // The deliveries are taken over by claims (of node B here), counted in KQ_TAKEN_OVER lines.
    await waitFor(
      () =>
        b.logs.filter((l) => l.code === "KQ_TAKEN_OVER").reduce((n, l) => n + Number(l.deliveries), 0) === 50,
      5_000,
      "KQ_TAKEN_OVER lines adding up to 50",
    );
    const { rows: pending } = await db.pool.query(
      "SELECT claimed_by FROM pending_transactions WHERE message_id = $1",
      [tx.messageId],
    );
    expect(pending[0].claimed_by).toBeNull();
    console.log(`kill -9 -> first redelivery on the other node: ${firstAfterMs} ms`);
    await b.stop();
  });

  it("kill -9 of a node whose lock dates from an earlier PostgreSQL start (it died while the server was away): declared dead seconds later, not after its lease", async () => {
    await upsertBinding(db.pool, binding("stale", "st"), "cli", new Date());
    const a = await start("stale-a", ["--lease-seconds", "60", "--delivery-seconds", "20"]);
    const b = await start("stale-b", ["--lease-seconds", "60", "--delivery-seconds", "20"]);
    const onA = await recordingConsumer(a.port, "stale", () => "ignore");
    conns.push(onA.conn);
    const producer = await KiteqConnection.connect({
      host: a.host,
      port: a.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    conns.push(producer);
    for (let i = 0; i < 20; i++) {
      expect(
        (await producer.publish(buildHeader({ topic: "st", messageType: "m", groupId: "p" }), "x")).status,
      ).toBe(true);
    }
    await waitFor(() => onA.received.length === 20, 10_000, "20 pushes on node A");
    const onB = await recordingConsumer(b.port, "stale", () => true);
    conns.push(onB.conn);
    // As if node A took its lock before a server restart and died before taking it again: its
    // row names an earlier server start (a walkthrough: killed 3 s into a 10 s outage).
    await db.pool.query(
      "UPDATE nodes SET lock_epoch = lock_epoch - interval '1 day' WHERE node_id = 'stale-a'",
    );
    const claimerOfA = await claimerOf("stale-a");
    await a.kill();
    const killedAt = Date.now();
    // Before: never declared; its deliveries waited for their 60 s lease.
    await waitFor(() => new Set(onB.ids()).size === 20, 20_000, "all 20 redelivered on node B");
    const afterMs = Date.now() - killedAt;
    expect(afterMs).toBeLessThan(15_000);
    expect(b.logs.some((l) => l.code === "KQ_TAKEOVER" && l.claimer === claimerOfA)).toBe(true);
    console.log(`kill -9 of a node locked under an earlier server start -> redelivered after ${afterMs} ms`);
    await b.stop();
  });

  it("SIGTERM of a node holding deliveries: it releases them itself; nobody takes it for dead", async () => {
    await upsertBinding(db.pool, binding("calm", "ct"), "cli", new Date());
    // B first: it is the maintenance node watching A's lock while A stops.
    const b = await start("term-b", ["--lease-seconds", "30", "--delivery-seconds", "20"]);
    const a = await start("term-a", ["--lease-seconds", "30", "--delivery-seconds", "20"]);
    const onA = await recordingConsumer(a.port, "calm", () => "ignore");
    conns.push(onA.conn);
    const producer = await KiteqConnection.connect({
      host: a.host,
      port: a.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    conns.push(producer);
    for (let i = 0; i < 30; i++) {
      expect(
        (await producer.publish(buildHeader({ topic: "ct", messageType: "m", groupId: "p" }), "x")).status,
      ).toBe(true);
    }
    await waitFor(() => onA.received.length === 30, 10_000, "30 pushes on node A");
    const onB = await recordingConsumer(b.port, "calm", () => true);
    conns.push(onB.conn);
    expect(await a.stop()).toBe(0);
    await waitFor(() => new Set(onB.ids()).size === 30, 10_000, "the 30 delivered by node B");
    expect(b.logs.some((l) => l.code === "KQ_TAKEOVER")).toBe(false);
    await b.stop();
  });

  it("SIGSTOP for 5 s: its claims stay its own, and it carries on after SIGCONT", async () => {
    await upsertBinding(db.pool, binding("paused", "pt"), "cli", new Date());
    const a = await start("stop-a", ["--lease-seconds", "30", "--delivery-seconds", "20"]);
    const b = await start("stop-b", ["--lease-seconds", "30", "--delivery-seconds", "20"]);
    let release: (ok: boolean) => void = () => undefined;
    const gate = new Promise<boolean>((r) => {
      release = r;
    });
    const onA = await recordingConsumer(a.port, "paused", () => true);
    onA.conn.onMessage((m) => {
      onA.received.push(m);
      return gate;
    });
    conns.push(onA.conn);
    const producer = await KiteqConnection.connect({
      host: a.host,
      port: a.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    conns.push(producer);
    for (let i = 0; i < 20; i++) {
      const h = buildHeader({ topic: "pt", messageType: "m", groupId: "p" });
      expect((await producer.publish(h, "x")).status).toBe(true);
    }
    await waitFor(() => onA.received.length === 20, 10_000, "20 pushes on node A");
    const onB = await recordingConsumer(b.port, "paused", () => true);
    conns.push(onB.conn);
    a.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 5000));
    expect(onB.received).toHaveLength(0);
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'paused' AND claimed_by LIKE 'stop-a/%'",
    );
    expect(rows[0].n).toBe(20);
    a.child.kill("SIGCONT");
    release(true);
    await waitFor(
      async () => {
        const r = await db.pool.query("SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'paused'");
        return r.rows[0].n === 0;
      },
      10_000,
      "node A's acks written after SIGCONT",
    );
    expect(onB.received).toHaveLength(0);
    expect(b.logs.some((l) => l.code === "KQ_TAKEOVER" && String(l.claimer).startsWith("stop-a/"))).toBe(
      false,
    );
    await a.stop();
    await b.stop();
  });
});

describe("e2e: PostgreSQL restarted under two nodes", () => {
  it("nobody is declared dead for a lock that vanished with the restart; both take their locks again", async () => {
    const dir = path.resolve(".tmp", `restart-${randomBytes(4).toString("hex")}`);
    const port = await freePort();
    let pg = await startEmbeddedPostgres({ dataDir: path.join(dir, "pg"), port, logger: silentLogger });
    const url = pg.tcpUrl("postgres");
    const brokers: BrokerProcess[] = [];
    const conns: KiteqConnection[] = [];
    try {
      const pool = createPool(url, { max: 2 });
      await runMigrations(pool, silentLogger);
      await upsertBinding(pool, binding("rs", "rt"), "cli", new Date());
      await pool.end();
      const args = (id: string) => [
        "--db",
        url,
        "--node-id",
        id,
        "--recover-seconds",
        "1",
        "--lease-seconds",
        "30",
        "--delivery-seconds",
        "30",
      ];
      const a = await startBrokerProcess(args("rs-a"));
      brokers.push(a);
      const b = await startBrokerProcess(args("rs-b"));
      brokers.push(b);
      // Node A holds deliveries in flight (its consumer never answers) across the restart.
      const onA = await recordingConsumer(a.port, "rs", () => "ignore");
      conns.push(onA.conn);
      const producer = await KiteqConnection.connect({
        host: a.host,
        port: a.port,
        groupId: "p",
        heartbeatMs: 0,
      });
      conns.push(producer);
      for (let i = 0; i < 10; i++) {
        expect(
          (await producer.publish(buildHeader({ topic: "rt", messageType: "m", groupId: "p" }), "x")).status,
        ).toBe(true);
      }
      await waitFor(() => onA.received.length === 10, 10_000, "10 pushes on node A");
      await pg.stop();
      pg = await startEmbeddedPostgres({ dataDir: path.join(dir, "pg"), port, logger: silentLogger });
      await waitFor(
        () => [a, b].every((n) => logged(n, "liveness connection open again")),
        20_000,
        "both nodes took their liveness locks again",
      );
      // Give the maintenance node a few checks: nobody's claims are taken over.
      await new Promise((r) => setTimeout(r, 2000));
      for (const n of [a, b]) expect(n.logs.some((l) => l.code === "KQ_TAKEOVER")).toBe(false);
      const check = createPool(url, { max: 1 });
      const { rows } = await check.query(
        "SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'rs' AND claimed_by LIKE 'rs-a/%'",
      );
      const { rows: locks } = await check.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 1802595446::oid",
      );
      await check.end();
      expect(rows[0].n).toBe(10);
      expect(locks[0].n).toBe(2);
    } finally {
      for (const c of conns) c.close();
      for (const n of brokers) await n.kill();
      await pg.stop();
      const { rm } = await import("node:fs/promises");
      await rm(dir, { recursive: true, force: true });
    }
  });
});
