/**
 * The admin JSON API (/api/...) against a real database: every route, paging, filters, the token,
 * 400 for bad input, 404 for unknown things.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminServer, startAdminServer } from "../../src/admin/index.js";
import { HEARTBEAT_STALE_MS } from "../../src/admin/sampler.js";
import { GroupCounters } from "../../src/delivery/group-counters.js";
import { LatencyHistogram } from "../../src/latency.js";
import { silentLogger } from "../../src/log.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { ensurePartitions } from "../../src/store/db.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deadLetterDue } from "../support/dead-letters.js";
import { idleMetricsSource } from "../support/metrics-source.js";
import { publishRecord } from "../support/records.js";

const TOKEN = "s3cret-token";

describe("e2e: admin JSON API", () => {
  let db: TestDatabase;
  let admin: AdminServer;
  let base: string;
  const counters = new GroupCounters();
  const storeLatency = new LatencyHistogram();
  const source = idleMetricsSource({
    groupCounters: () => counters.all(),
    txCounters: () => ({ checksSent: 4, gaveUp: 1, expired: 5, committed: 2, rolledBack: 3 }),
    latencies: () => ({
      publishStore: storeLatency,
      publishToDeliver: new LatencyHistogram(),
      claim: new LatencyHistogram(),
    }),
  });
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${base}${path}`, {
      ...init,
      headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json", ...init.headers },
    });
  const json = async (path: string, init: RequestInit = {}) => {
    const res = await api(path, init);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> & { error?: string } };
  };
  const post = (path: string, body: unknown) => json(path, { method: "POST", body: JSON.stringify(body) });

  /** Publish `n` messages to `group` on `topic` and dead-letter them with `reason`; their ids. */
  const deadLetter = async (group: string, topic: string, n: number, reason: string): Promise<string[]> => {
    const now = new Date();
    const recs = Array.from({ length: n }, () => publishRecord(now, [group], { topic, deliverLimit: 1 }));
    await insertPublishBatch(db.pool, recs, {
      now,
      nodeId: "t",
      leaseUntil: now,
      firstTxCheckAt: now,
    });
    await deadLetterDue(db.pool, group, { now, limit: n, reason });
    return recs.map((r) => r.messageId);
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    const now = new Date();
    await ensurePartitions(db.pool, now);
    await db.pool.query(
      `INSERT INTO nodes (node_id, address, started_at, heartbeat_at, stopped_at) VALUES
         ('self', '127.0.0.1:13800', $1, $1, NULL),
         ('gone', '127.0.0.1:13810', $2, $2, $2),
         ('quiet', '127.0.0.1:13820', $2, $2, NULL)`,
      [now, new Date(now.getTime() - 3_600_000)],
    );
    // "crashed": killed 10 s ago (fresh heartbeat) and declared dead by the cluster: dead, not
    // alive until its heartbeat goes stale and then unresponsive for ever.
    const killedAt = new Date(now.getTime() - 10_000);
    await db.pool.query(
      `INSERT INTO nodes (node_id, address, started_at, heartbeat_at, stopped_at, claimer)
       VALUES ('crashed', '127.0.0.1:13830', $1, $1, NULL, '127.0.0.1:13830/run-1')`,
      [killedAt],
    );
    await db.pool.query(
      "INSERT INTO dead_claimers (claimer, declared_at, until) VALUES ('127.0.0.1:13830/run-1', $1, $1)",
      [killedAt],
    );
    for (const [groupId, topic] of [
      ["lagging", "orders"],
      ["idle", "orders"],
      ["dl", "orders"],
      ["dl", "payments"],
    ] as const) {
      await upsertBinding(
        db.pool,
        {
          groupId,
          topic,
          messageType: "pay",
          bindType: 0,
          version: "1.0.0",
          watermark: 100,
          persistent: true,
        },
        "cli",
        now,
      );
    }
    // "lagging" is owed 3, the oldest due 2 minutes ago.
    const old = new Date(now.getTime() - 120_000);
    await insertPublishBatch(
      db.pool,
      [0, 1, 2].map(() => publishRecord(old, ["lagging"], { topic: "orders" })),
      { now: old, nodeId: "t", leaseUntil: old, firstTxCheckAt: old },
    );
    counters.of("lagging").pushed = 5;
    admin = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      pool: db.pool,
      token: TOKEN,
      metrics: source,
      log: silentLogger,
      processMetrics: false,
      sampleIntervalMs: 0,
      deadLetterIntervalMs: 0,
      api: {
        nodeId: "self",
        version: "9.9.9",
        startedAt: now,
        consumers: () => new Map([["idle", 2]]),
        topics: ["audit"],
      },
    });
    base = `http://127.0.0.1:${admin.address.port}`;
  }, 60_000);
  afterAll(async () => {
    await admin?.close();
    await db?.drop();
  });

  it("every /api route needs the token (401 without it, or with a wrong one)", async () => {
    for (const path of [
      "/api/overview",
      "/api/groups",
      "/api/groups/dl/dead-letters",
      `/api/messages/${"a".repeat(32)}/explain`,
    ]) {
      expect((await fetch(`${base}${path}`)).status, path).toBe(401);
      expect(
        (await fetch(`${base}${path}`, { headers: { Authorization: "Bearer nope" } })).status,
        path,
      ).toBe(401);
    }
    expect((await fetch(`${base}/api/groups/dl/redrive`, { method: "POST", body: "{}" })).status).toBe(401);
  });

  it("GET /api/overview: nodes with liveness and version, topics, rates", async () => {
    const { status, body } = await json("/api/overview");
    expect(status).toBe(200);
    const nodes = body.nodes as { nodeId: string; liveness: string; version: string | null; self: boolean }[];
    expect(nodes.map((n) => [n.nodeId, n.liveness, n.version, n.self])).toEqual([
      ["crashed", "dead", null, false],
      ["gone", "stopped", null, false],
      ["quiet", "unresponsive", null, false],
      ["self", "alive", "9.9.9", true],
    ]);
    expect(body.topics).toEqual(["audit", "orders", "payments"]);
    expect(body.owed).toBe(3);
    expect(body.rates).toMatchObject({ publishPerSecond: 0, pushPerSecond: 0, scope: "cluster" });
  });

  it("GET /api/groups: owed, in flight, oldest owed age, bindings, consumers; the most behind first", async () => {
    const { status, body } = await json("/api/groups");
    expect(status).toBe(200);
    const groups = body.groups as {
      groupId: string;
      owed: number;
      inFlight: number;
      oldestOwedAgeSeconds: number;
      bindings: { topic: string }[];
      consumers: Record<string, number>;
      rates: Record<string, number>;
    }[];
    expect(groups[0]!.groupId).toBe("lagging");
    expect(groups[0]!.owed).toBe(3);
    expect(groups[0]!.inFlight).toBe(0);
    expect(groups[0]!.oldestOwedAgeSeconds).toBeGreaterThanOrEqual(119);
    expect(groups[0]!.oldestOwedAgeSeconds).toBeLessThan(200);
    expect(groups[0]!.rates).toMatchObject({ delivered: 0, acked: 0 });
    const idle = groups.find((g) => g.groupId === "idle")!;
    expect(idle).toMatchObject({ owed: 0, oldestOwedAgeSeconds: 0, consumers: { self: 2 } });
    expect(groups.find((g) => g.groupId === "dl")!.bindings.map((b) => b.topic)).toEqual([
      "orders",
      "payments",
    ]);
    const one = await json("/api/groups/lagging");
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ groupId: "lagging", owed: 3 });
    expect(Array.isArray(one.body.series)).toBe(true);
    expect((await json("/api/groups/nobody")).status).toBe(404);
    expect((await json("/api/nothing")).status).toBe(404);
  });

  it("GET /api/groups/:group/dead-letters: paged by cursor, filtered by topic, error and time", async () => {
    const orders = await deadLetter("dl", "orders", 3, "consumer said false");
    const payments = await deadLetter("dl", "payments", 2, "no ack within 5000 ms");
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = cursor === null ? "" : `&cursor=${cursor}`;
      const { status, body } = await json(`/api/groups/dl/dead-letters?limit=2${q}`);
      expect(status).toBe(200);
      const items = body.items as { messageId: string; lastError: string }[];
      expect(items.length).toBeLessThanOrEqual(2);
      seen.push(...items.map((i) => i.messageId));
      cursor = body.nextCursor as string | null;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual([...orders, ...payments].sort());

    const byTopic = await json("/api/groups/dl/dead-letters?topic=payments");
    expect((byTopic.body.items as { messageId: string }[]).map((i) => i.messageId).sort()).toEqual(
      payments.sort(),
    );
    const byError = await json("/api/groups/dl/dead-letters?error=SAID%20FALSE");
    const errItems = byError.body.items as { messageId: string; lastError: string }[];
    expect(errItems.map((i) => i.messageId).sort()).toEqual(orders.sort());
    expect(errItems[0]!.lastError).toBe("consumer said false");
    const byType = await json("/api/groups/dl/dead-letters?messageType=other");
    expect(byType.body.items).toEqual([]);
    const future = await json(
      "/api/groups/dl/dead-letters?since=2099-01-01T00:00:00Z&until=2099-01-02T00:00:00Z",
    );
    expect(future.body.items).toEqual([]);
    const recent = await json("/api/groups/dl/dead-letters?since=1h");
    expect((recent.body.items as unknown[]).length).toBe(5);

    for (const bad of [
      "since=yesterday",
      "limit=0",
      "limit=abc",
      "limit=5000",
      "cursor=zzz",
      // Parsed by Date.parse, not by PostgreSQL: a 500 with the raw database error before.
      `cursor=${Buffer.from(JSON.stringify(["1", 5])).toString("base64url")}`,
      "since=now&until=1h",
    ]) {
      const r = await json(`/api/groups/dl/dead-letters?${bad}`);
      expect(r.status, bad).toBe(400);
      expect(typeof r.body.error, bad).toBe("string");
    }
    expect((await json("/api/groups/nobody/dead-letters")).status).toBe(404);
  });

  it("POST /api/groups/:group/redrive: dry run, filters, rate limit, recorded with who and why", async () => {
    const ids = await deadLetter("dl", "orders", 0, "x"); // nothing new: the 5 of the previous test
    expect(ids).toEqual([]);
    const dry = await post("/api/groups/dl/redrive", { dryRun: true, topic: "orders" });
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ dryRun: true, matched: 3, redriven: 0 });
    const owedBefore = await db.pool.query("SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'dl'");
    expect(owedBefore.rows[0].n).toBe(0);

    const started = Date.now();
    const real = await post("/api/groups/dl/redrive", {
      topic: "orders",
      ratePerSecond: 2,
      by: "alice",
      reason: "consumer fixed",
    });
    const took = Date.now() - started;
    expect(real.status).toBe(200);
    expect(real.body).toMatchObject({ dryRun: false, matched: 3, redriven: 3 });
    // Three at 2/s: the third starts a second after the first.
    expect(took).toBeGreaterThanOrEqual(950);
    const events = await db.pool.query(
      "SELECT detail, node_id FROM message_events WHERE group_id = 'dl' AND kind = 'redriven'",
    );
    expect(events.rows).toHaveLength(3);
    expect(events.rows[0].detail).toMatch(/^redriven by alice from \S+: consumer fixed$/);
    expect(events.rows[0].node_id).toBe("self");
    const left = await json("/api/groups/dl/dead-letters");
    expect((left.body.items as unknown[]).length).toBe(2);

    // Query-string filters work too; max bounds the work.
    const capped = await json("/api/groups/dl/redrive?dryRun=true&max=1", { method: "POST" });
    expect(capped.body).toMatchObject({ matched: 1, limitReached: true });
    // `by` from the query string too (before: recorded as "admin api", its reason kept).
    const byQuery = await json("/api/groups/dl/redrive?max=1&by=bob&reason=from%20the%20query", {
      method: "POST",
    });
    expect(byQuery.body).toMatchObject({ redriven: 1 });
    const byBob = await db.pool.query(
      "SELECT detail FROM message_events WHERE group_id = 'dl' AND kind = 'redriven' AND detail LIKE 'redriven by bob %'",
    );
    expect(byBob.rows.map((r) => r.detail)).toEqual([
      expect.stringMatching(/^redriven by bob from \S+: from the query$/),
    ]);
    // Exactly max matched, nothing left: not "stopped at max" (before: limitReached true).
    const exact = await json("/api/groups/dl/redrive?dryRun=true&max=1", { method: "POST" });
    expect(exact.body).toMatchObject({ matched: 1, limitReached: false });

    for (const bad of [
      { dryRun: "maybe" },
      { ratePerSecond: 0 },
      { max: -1 },
      { since: "never" },
      { topic: 5 },
      { max: 10_000, ratePerSecond: 1 },
    ]) {
      const r = await post("/api/groups/dl/redrive", bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
    }
    const notJson = await json("/api/groups/dl/redrive", { method: "POST", body: "{nope" });
    expect(notJson.status).toBe(400);
    expect((await json("/api/groups/dl/redrive")).status).toBe(405);
    expect((await post("/api/groups/nobody/redrive", {})).status).toBe(404);
  });

  it("GET /metrics: per-group gauges and counters, 2PC, node liveness, latency histograms", async () => {
    storeLatency.observe(0.003);
    storeLatency.observe(0.2);
    counters.of("lagging").acked = 4;
    const res = await api("/metrics");
    expect(res.status).toBe(200);
    const text = await res.text();
    const value = (series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    expect(value('kiteq_group_owed{group="lagging"}')).toBe(3);
    expect(value('kiteq_group_oldest_owed_age_seconds{group="lagging"}')).toBeGreaterThan(100);
    expect(value('kiteq_group_in_flight{group="lagging"}')).toBe(0);
    expect(value('kiteq_group_dead_letters{group="dl"}')).toBeGreaterThanOrEqual(1);
    expect(value('kiteq_group_delivered_total{group="lagging"}')).toBe(5);
    expect(value('kiteq_group_acked_total{group="lagging"}')).toBe(4);
    expect(value("kiteq_tx_pending")).toBe(0);
    expect(value("kiteq_tx_checks_total")).toBe(4);
    expect(value("kiteq_tx_give_ups_total")).toBe(1);
    expect(value("kiteq_tx_expired_total")).toBe(5);
    expect(value('kiteq_nodes{liveness="alive"}')).toBe(1);
    expect(value('kiteq_nodes{liveness="stopped"}')).toBe(1);
    expect(value('kiteq_nodes{liveness="unresponsive"}')).toBe(1);
    expect(value('kiteq_nodes{liveness="dead"}')).toBe(1);
    // Before: "no heartbeat for 30 s", while a node was unresponsive after 15 s.
    expect(text).toContain(`unresponsive: no heartbeat for ${HEARTBEAT_STALE_MS / 1000} s,`);
    expect(value('kiteq_publish_store_seconds_bucket{le="0.005"}')).toBe(1);
    expect(value('kiteq_publish_store_seconds_bucket{le="0.25"}')).toBe(2);
    expect(value('kiteq_publish_store_seconds_bucket{le="+Inf"}')).toBe(2);
    expect(value("kiteq_publish_store_seconds_count")).toBe(2);
    expect(value("kiteq_claim_seconds_count")).toBe(0);
    // Bounded labels: groups and liveness, never a message id.
    expect(text).not.toMatch(/[0-9a-f]{32}/);
  });

  it("GET /api/messages/:id/explain: the explanation; 400 for a bad id, 404 for an unknown one", async () => {
    const [id] = await deadLetter("dx", "orders", 1, "boom");
    const { status, body } = await json(`/api/messages/${id!.toUpperCase()}/explain`);
    expect(status).toBe(200);
    const groups = body.groups as { groupId: string; state: string; description: string }[];
    expect(groups.find((g) => g.groupId === "dx")).toMatchObject({ state: "dead_lettered" });
    expect((await json("/api/messages/xyz/explain")).status).toBe(400);
    expect((await json(`/api/messages/${"0".repeat(32)}/explain`)).status).toBe(404);
  });

  it("GET /api/groups/:group/history: a group's events in [since, until), limited; 400 for bad input", async () => {
    const ids = await deadLetter("hx", "orders", 2, "nope");
    const res = await api("/api/groups/hx/history?since=1h&limit=100");
    expect(res.status).toBe(200);
    const rows = (await res.json()) as { messageId: string; kind: string; at: string }[];
    expect(new Set(rows.map((r) => r.messageId))).toEqual(new Set(ids));
    expect(rows.map((r) => r.kind)).toContain("dead_lettered");
    const one = (await (await api("/api/groups/hx/history?since=1h&limit=1")).json()) as unknown[];
    expect(one).toHaveLength(1);
    expect((await json("/api/groups/hx/history")).status).toBe(400);
    expect((await json("/api/groups/hx/history?since=yesterday")).status).toBe(400);
    expect((await json("/api/groups/hx/history?since=2h&until=3h")).status).toBe(400);
    expect((await json("/api/groups/hx/history?since=1h&limit=0")).status).toBe(400);
    // At most 2,000 rows a request (more come by the Link): their JSON is made on the broker's
    // event loop.
    expect((await json("/api/groups/hx/history?since=1h&limit=2000")).status).toBe(200);
    expect((await json("/api/groups/hx/history?since=1h&limit=2001")).status).toBe(400);
    expect((await json("/api/groups/hx/history?since=1h", { method: "POST" })).status).toBe(405);
  });

  it("GET /api/bindings: every binding as stored", async () => {
    const res = await api("/api/bindings");
    expect(res.status).toBe(200);
    const rows = (await res.json()) as Record<string, unknown>[];
    expect(rows).toContainEqual({
      groupId: "dl",
      topic: "payments",
      messageType: "pay",
      bindType: 0,
      version: "1.0.0",
      watermark: 100,
      persistent: true,
    });
    expect((await fetch(`${base}/api/bindings`)).status).toBe(401);
  });
});
