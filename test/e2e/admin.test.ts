import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminServer, type MetricsSource, startAdminServer } from "../../src/admin/index.js";
import type { DeliveryCounters } from "../../src/delivery/dispatcher.js";
import { silentLogger } from "../../src/log.js";
import type { PublishCounters } from "../../src/publish/publisher.js";
import { createPool, ensurePartitions } from "../../src/store/db.js";
import { freePort } from "../../src/store/embedded.js";
import { insertPublishBatch, type PublishRecord } from "../../src/store/messages.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

/** A MetricsSource whose numbers the test sets. */
function fakeSource() {
  const publish: PublishCounters = { accepted: 7, refused: 2, failed: 1, fly: 3, duplicates: 4 };
  const delivery: DeliveryCounters = {
    pushed: 11,
    acked: 9,
    nacked: 2,
    timeouts: 1,
    deadLettered: 5,
    claimed: 8,
    fastPath: 12,
    fly: 13,
    flyOverRate: 15,
    takenOver: 14,
    leaseLapsed: 0,
  };
  const batches = { batches: 21, items: 400, failures: 22 };
  let sessions = 3;
  const source: MetricsSource = {
    publishCounters: () => publish,
    deliveryCounters: () => delivery,
    batchStats: () => batches,
    sessionsConnected: () => sessions,
  };
  return { source, publish, delivery, setSessions: (n: number) => (sessions = n) };
}

/** A stored message owed to `groups` (body "hi": 2 bytes). */
const record = (groups: string[]): PublishRecord =>
  publishRecord(new Date(), groups, { groupId: "producer", body: Buffer.from("hi") });

/** The value of one sample line (`name{labels} value`), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("e2e: admin HTTP server", () => {
  let db: TestDatabase;
  let admin: AdminServer;
  let base: string;
  const fake = fakeSource();

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
    admin = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      pool: db.pool,
      metrics: fake.source,
      log: silentLogger,
      owedCacheMs: 0,
      processMetrics: false,
    });
    base = `http://127.0.0.1:${admin.address.port}`;
  });
  afterAll(async () => {
    await admin?.close();
    await db?.drop();
  });

  it("GET /healthz: 200 ok while the store answers", async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  it("GET /healthz: 503 when the store does not answer", async () => {
    const deadPool = createPool(`postgres://nobody:x@127.0.0.1:${await freePort()}/none`, { max: 1 });
    const down = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      pool: deadPool,
      metrics: fake.source,
      log: silentLogger,
      processMetrics: false,
    });
    try {
      const res = await fetch(`http://127.0.0.1:${down.address.port}/healthz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: "unavailable", error: expect.any(String) });
    } finally {
      await down.close();
      await deadPool.end();
    }
  });

  it("GET /healthz with shards: 200 while one answers (degraded, naming the shards down), 503 when none does", async () => {
    const deadPools = [0, 1].map(async () =>
      createPool(`postgres://nobody:x@127.0.0.1:${await freePort()}/none`, { max: 1 }),
    );
    const [dead0, dead1] = await Promise.all(deadPools);
    const servers: AdminServer[] = [];
    const healthOf = async (shardPools: import("pg").Pool[], token?: string, sendToken = false) => {
      const server = await startAdminServer({
        host: "127.0.0.1",
        port: 0,
        pool: shardPools[0]!,
        shardPools,
        storeId: "store-digest",
        ...(token === undefined ? {} : { token }),
        metrics: fake.source,
        log: silentLogger,
        processMetrics: false,
      });
      servers.push(server);
      const res = await fetch(`http://127.0.0.1:${server.address.port}/healthz`, {
        headers: sendToken ? { Authorization: `Bearer ${token}` } : {},
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    try {
      expect(await healthOf([db.pool, db.pool])).toEqual({
        status: 200,
        body: { status: "ok", store: "store-digest" },
      });
      // Shard 0 down: every node answered 503 before, though the other shards worked.
      const shard0Down = await healthOf([dead0!, db.pool]);
      expect(shard0Down.status).toBe(200);
      expect(shard0Down.body).toMatchObject({ status: "degraded", store: "store-digest" });
      expect(shard0Down.body.shardsDown).toEqual([
        { shard: 0, error: expect.stringMatching(/ECONNREFUSED|connect/) },
      ]);
      // Shard 1 down: said (it answered plain "ok" before).
      const shard1Down = await healthOf([db.pool, dead1!]);
      expect(shard1Down.status).toBe(200);
      expect(shard1Down.body).toMatchObject({ status: "degraded", shardsDown: [{ shard: 1 }] });
      // Without the token: the state only, not which shard nor why.
      expect(await healthOf([db.pool, dead1!], "t0ken")).toEqual({
        status: 200,
        body: { status: "degraded" },
      });
      expect((await healthOf([db.pool, dead1!], "t0ken", true)).body).toMatchObject({
        shardsDown: [{ shard: 1 }],
      });
      // None answers: 503 naming each.
      const allDown = await healthOf([dead0!, dead1!]);
      expect(allDown.status).toBe(503);
      expect(allDown.body).toMatchObject({
        status: "unavailable",
        error: expect.stringMatching(/^shard 0: .+; shard 1: .+/),
      });
    } finally {
      for (const s of servers) await s.close();
      await dead0!.end();
      await dead1!.end();
    }
  });

  it("GET /metrics: the node's counters, batch stats, sessions, pool and owed deliveries, read at each scrape", async () => {
    const g = `owed-${randomBytes(3).toString("hex")}`;
    await insertPublishBatch(db.pool, [record([g]), record([g]), record(["x"])], {
      now: new Date(),
      nodeId: "n1",
      leaseUntil: new Date(),
      firstTxCheckAt: new Date(),
    });
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain("# TYPE kiteq_publish_accepted_total counter");
    expect(sample(text, "kiteq_publish_accepted_total")).toBe(7);
    expect(sample(text, "kiteq_publish_refused_total")).toBe(2);
    expect(sample(text, "kiteq_publish_duplicates_total")).toBe(4);
    expect(sample(text, "kiteq_delivery_pushed_total")).toBe(11);
    expect(sample(text, "kiteq_delivery_dead_lettered_total")).toBe(5);
    expect(sample(text, "kiteq_delivery_fast_path_total")).toBe(12);
    expect(sample(text, "kiteq_publish_batches_total")).toBe(21);
    expect(sample(text, "kiteq_publish_batch_messages_total")).toBe(400);
    expect(sample(text, "kiteq_sessions_connected")).toBe(3);
    expect(sample(text, "kiteq_db_pool_connections")).toBeGreaterThanOrEqual(1);
    expect(sample(text, `kiteq_deliveries_owed{group="${g}"}`)).toBe(2);
    expect(sample(text, 'kiteq_deliveries_owed{group="x"}')).toBe(1);

    // Counters are read from the source at every scrape.
    fake.publish.accepted = 70;
    fake.delivery.acked = 90;
    fake.setSessions(0);
    const again = await (await fetch(`${base}/metrics`)).text();
    expect(sample(again, "kiteq_publish_accepted_total")).toBe(70);
    expect(sample(again, "kiteq_delivery_acked_total")).toBe(90);
    expect(sample(again, "kiteq_sessions_connected")).toBe(0);
  });

  it("GET /messages/:id: the history as JSON; 404 unknown; 400 bad id", async () => {
    const rec = record(["ga"]);
    await insertPublishBatch(db.pool, [rec], {
      now: new Date(),
      nodeId: "n1",
      leaseUntil: new Date(),
      firstTxCheckAt: new Date(),
    });
    const res = await fetch(`${base}/messages/${rec.messageId.toUpperCase()}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const body = (await res.json()) as Record<string, unknown> & { events: Record<string, unknown>[] };
    expect(body).toMatchObject({ messageId: rec.messageId, topic: "trade", messageType: "pay", bodySize: 2 });
    expect(body.events).toEqual([
      { at: expect.any(String), kind: "received", groupId: null, attempt: null, nodeId: "n1", detail: null },
    ]);

    const unknown = await fetch(`${base}/messages/${randomBytes(16).toString("hex")}`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: expect.stringContaining("no message") });
    const bad = await fetch(`${base}/messages/not-an-id`);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: expect.stringContaining("32 hexadecimal") });
  });

  it("other paths 404, other methods 405; close() stops listening", async () => {
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    const post = await fetch(`${base}/healthz`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");

    const extra = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      pool: db.pool,
      metrics: fake.source,
      log: silentLogger,
      processMetrics: false,
    });
    const url = `http://127.0.0.1:${extra.address.port}/healthz`;
    expect((await fetch(url)).status).toBe(200);
    await extra.close();
    await expect(fetch(url)).rejects.toThrow();
  });
});
