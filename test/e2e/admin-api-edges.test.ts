/**
 * The admin JSON API off the happy path (a helper's operator walkthrough; each case failed on the
 * code before): a NUL byte answered 500 with PostgreSQL's error, 4xx answers without a stable
 * code, a re-drive that re-drove the same message twice in one request, a `max` of null (the
 * console's mistyped number) taken as the default 1,000, and requests that waited for ever while
 * PostgreSQL did not answer.
 */
import net from "node:net";
import pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminServer, startAdminServer } from "../../src/admin/index.js";
import { createPool, ensurePartitions } from "../../src/store/db.js";
import { ackDeliveries } from "../../src/store/deliveries.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { bind } from "../support/bindings.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deadLetterDue } from "../support/dead-letters.js";
import { idleMetricsSource, startTestAdminServer } from "../support/metrics-source.js";
import { publishRecord } from "../support/records.js";

describe("e2e: admin JSON API edges", () => {
  let db: TestDatabase;
  let admin: AdminServer;
  let base: string;

  const json = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${base}${path}`, {
      ...init,
      headers: { "Content-Type": "application/json", ...init.headers },
      signal: AbortSignal.timeout(60_000),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  /** Dead-letter what `group` owes, as a consumer that still fails. */
  const failEverything = (group: string) =>
    deadLetterDue(db.pool, group, { reason: "consumer still broken" });

  /** `n` messages of topic orders stored for `groupId` and dead-lettered with `reason`. */
  const deadLettered = async (groupId: string, n: number, reason: string) => {
    const now = new Date();
    const records = Array.from({ length: n }, () =>
      publishRecord(now, [groupId], { topic: "orders", deliverLimit: 1 }),
    );
    await insertPublishBatch(db.pool, records, { now, nodeId: "t", leaseUntil: now, firstTxCheckAt: now });
    return deadLetterDue(db.pool, groupId, { reason });
  };

  /** An admin server of its own on the test database: a sample at every request. */
  const ownAdminServer = () => startTestAdminServer(db.pool, { sampleIntervalMs: 0 });

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
    await bind(db.pool, { groupId: "dl", topic: "orders", messageType: "pay" });
    admin = await startTestAdminServer(db.pool, { sampleIntervalMs: 0, deadLetterIntervalMs: 0 });
    base = `http://127.0.0.1:${admin.address.port}`;
  });
  afterAll(async () => {
    await admin?.close();
    await db?.drop();
  });

  it("a NUL byte in a filter or a group id is bad input (400), not a 500 with PostgreSQL's error", async () => {
    for (const path of [
      "/api/groups/dl/dead-letters?topic=%00",
      "/api/groups/dl/dead-letters?error=%00",
      "/api/groups/dl/dead-letters?messageType=a%00b",
      "/api/groups/%00x/history?since=1h",
    ]) {
      const r = await json(path);
      expect(r.status, path).toBe(400);
      expect(r.body.code, path).toBe("KQ_REQUEST_INVALID");
    }
    const r = await json("/api/groups/dl/redrive", {
      method: "POST",
      body: JSON.stringify({ dryRun: true, topic: "\u0000" }),
    });
    expect(r.status).toBe(400);
  });

  it("every 4xx answer carries a stable code, as the 401 does", async () => {
    const cases: [string, RequestInit | undefined, string][] = [
      ["/api/groups/dl/dead-letters?limit=0", undefined, "KQ_REQUEST_INVALID"],
      ["/api/groups/dl/dead-letters?cursor=zzz", undefined, "KQ_REQUEST_INVALID"],
      ["/api/messages/zz/explain", undefined, "KQ_REQUEST_INVALID"],
      ["/api/nothing-here", undefined, "KQ_NOT_FOUND"],
      ["/api/overview", { method: "POST" }, "KQ_REQUEST_REFUSED"],
      ["/messages/zz", undefined, "KQ_REQUEST_INVALID"],
      [`/messages/${"0".repeat(32)}`, undefined, "KQ_NOT_FOUND"],
      ["/nothing", undefined, "KQ_NOT_FOUND"],
    ];
    for (const [path, init, code] of cases) {
      const r = await json(path, init);
      expect(r.status, path).toBeGreaterThanOrEqual(400);
      expect(r.status, path).toBeLessThan(500);
      expect(r.body.code, `${path} ${JSON.stringify(r.body)}`).toBe(code);
    }
  });

  it("a max of null is refused, not taken as the default 1,000", async () => {
    const r = await json("/api/groups/dl/redrive", {
      method: "POST",
      body: JSON.stringify({ dryRun: true, max: null, ratePerSecond: 100 }),
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/max must be an integer from 1 to 10000, not null/);
  });

  it("a re-drive re-drives each dead letter once, even when it is dead-lettered again meanwhile", async () => {
    // 150 dead letters: more than one page (100) of the re-drive's walk.
    const now = new Date();
    const records = Array.from({ length: 150 }, () =>
      publishRecord(now, ["dl"], { topic: "orders", deliverLimit: 1 }),
    );
    await insertPublishBatch(db.pool, records, { now, nodeId: "t", leaseUntil: now, firstTxCheckAt: now });
    expect(await failEverything("dl")).toBe(150);
    // A consumer that still fails: what is re-driven is dead-lettered again at once.
    let stop = false;
    const consumer = (async () => {
      while (!stop) {
        await failEverything("dl");
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const r = await json("/api/groups/dl/redrive", {
      method: "POST",
      body: JSON.stringify({ max: 1000, ratePerSecond: 1000, by: "test", reason: "once" }),
    });
    stop = true;
    await consumer;
    expect(r.status).toBe(200);
    const { rows } = await db.pool.query(
      `SELECT message_pk, count(*)::int AS n FROM message_events
        WHERE group_id = 'dl' AND kind = 'redriven' GROUP BY 1 HAVING count(*) > 1`,
    );
    // Before: 49-91 of the 150 re-driven twice by the one request.
    expect(rows, "messages re-driven more than once by one request").toEqual([]);
    expect(r.body).toMatchObject({ matched: 150, redriven: 150 });
  }, 60_000);

  it("a group's history pages through one instant's rows by its Link, each row once", async () => {
    // One ack batch: 30 rows at one instant. Before, the only way on was since = the last row's
    // time (read again) or + 1 ms (the rest of the batch skipped), and no answer said more exist.
    const now = new Date(Date.now() - 60_000);
    const records = Array.from({ length: 30 }, () => publishRecord(now, ["paged"], { topic: "orders" }));
    const stored = await insertPublishBatch(db.pool, records, {
      now,
      nodeId: "t",
      leaseUntil: now,
      firstTxCheckAt: now,
    });
    const ackedAt = new Date(now.getTime() + 5_000);
    await ackDeliveries(
      db.pool,
      stored.map((r) => ({ messagePk: r.pk!, groupId: "paged", attempt: 1, pushedAt: null, ackedAt })),
      "t",
    );
    const since = new Date(now.getTime() - 1_000).toISOString();
    const first = `/api/groups/paged/history?since=${since}&limit=1000`;
    const whole = (await json(first)).body as unknown as { messageId: string; kind: string }[];
    expect(whole).toHaveLength(30);
    const seen: string[] = [];
    let next: string | null = `/api/groups/paged/history?since=${since}&limit=7`;
    let pages = 0;
    while (next !== null && pages++ < 20) {
      const res: Response = await fetch(`${base}${next}`, { signal: AbortSignal.timeout(10_000) });
      expect(res.status).toBe(200);
      const rows = (await res.json()) as { messageId: string }[];
      seen.push(...rows.map((r) => r.messageId));
      const link = res.headers.get("link");
      // A full page names the next one; the last (short) page none.
      expect(link !== null, `page ${pages}: ${rows.length} rows`).toBe(rows.length === 7);
      next = link === null ? null : (/^<([^>]+)>; rel="next"$/.exec(link)?.[1] ?? null);
    }
    expect(seen).toEqual(whole.map((r) => r.messageId));
    expect(new Set(seen).size).toBe(30);
    // A place that is not one is bad input.
    const bad = await json(`/api/groups/paged/history?since=${since}&after=12.9.zz`);
    expect(bad).toMatchObject({ status: 400, body: { code: "KQ_REQUEST_INVALID" } });
  });

  it("the 2PC pending count says when it reached its cap (10,000), as the dead letters' does", async () => {
    const now = new Date();
    const insert = (from: number, to: number) =>
      db.pool.query(
        `INSERT INTO pending_transactions (message_pk, message_stored_at, message_id, topic, group_id, next_check_at, stored_at)
         SELECT 900000000 + i, $1, md5('cap' || i), 'cap', 'cap-producers', $1, $1 FROM generate_series($2::int, $3::int) i`,
        [now, from, to],
      );
    try {
      // Polled: the sampler's background sample (every turn here) may have begun before an insert.
      const pending = async () => {
        const { body } = await json("/api/overview");
        return [body.pendingTransactions, body.pendingTransactionsCapped];
      };
      await insert(1, 10);
      await expect.poll(pending, { timeout: 5_000 }).toEqual([10, false]);
      await insert(11, 12_000);
      // Before: 10000 with nothing saying so, shown as "10000" by the console for 12,000 waiting.
      await expect.poll(pending, { timeout: 5_000 }).toEqual([10_000, true]);
    } finally {
      await db.pool.query("DELETE FROM pending_transactions WHERE topic = 'cap'");
    }
  });

  it("a group no longer bound that owes nothing still shows and re-drives its dead letters", async () => {
    expect(await deadLettered("orphan", 3, "gone")).toBe(3);
    // No owed-count rows, as after migration 0004 rebuilt them from what was owed then.
    await db.pool.query("DELETE FROM owed_counts WHERE group_id = 'orphan'");
    // Before: 404 "no group orphan: not bound, nothing owed" (the CLI re-drove them all the same).
    const page = await json("/api/groups/orphan/dead-letters");
    expect(page.status).toBe(200);
    expect((page.body.items as unknown[]).length).toBe(3);
    const dry = await json("/api/groups/orphan/redrive", {
      method: "POST",
      body: JSON.stringify({ dryRun: true, by: "test", reason: "check" }),
    });
    expect(dry).toMatchObject({ status: 200, body: { matched: 3 } });
    expect((await json("/api/groups/never-seen/dead-letters")).status).toBe(404);
  });

  it("after a re-drive through the API, the groups' dead-letter counts are taken again at once", async () => {
    expect(await deadLettered("recount", 3, "x")).toBe(3);
    await bind(db.pool, { groupId: "recount", topic: "orders", messageType: "pay" });
    // The default dead-letter interval (15 s): counted at the first sample, then not for 15 s.
    const own = await ownAdminServer();
    const url = `http://127.0.0.1:${own.address.port}`;
    const deadOf = async () => {
      const res = await fetch(`${url}/api/groups`, { signal: AbortSignal.timeout(10_000) });
      const body = (await res.json()) as { groups: { groupId: string; deadLetters: number }[] };
      return body.groups.find((g) => g.groupId === "recount")?.deadLetters;
    };
    try {
      expect(await deadOf()).toBe(3);
      const res = await fetch(`${url}/api/groups/recount/redrive`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ by: "test", reason: "recount" }),
        signal: AbortSignal.timeout(20_000),
      });
      expect(((await res.json()) as { redriven: number }).redriven).toBe(3);
      // Before: still 3 until the next periodic count (a minute then), in the console too.
      await expect.poll(deadOf, { timeout: 5_000 }).toBe(0);
    } finally {
      await own.close();
    }
  });

  it("a re-drive running when the server closes answers with what it did", async () => {
    expect(await deadLettered("stopping", 60, "x")).toBe(60);
    await bind(db.pool, { groupId: "stopping", topic: "orders", messageType: "pay" });
    const own = await ownAdminServer();
    // 60 at 10 a second: 6 s; the server closes after about one.
    const answer = fetch(`http://127.0.0.1:${own.address.port}/api/groups/stopping/redrive`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ max: 1000, ratePerSecond: 10, by: "test", reason: "stop" }),
      signal: AbortSignal.timeout(20_000),
    });
    await new Promise((r) => setTimeout(r, 1_000));
    const started = Date.now();
    await own.close();
    expect(Date.now() - started).toBeLessThan(3_000);
    // Before: the connection was closed with no answer (the walk went on behind it).
    const res = await answer;
    expect(res.status).toBe(200);
    const body = (await res.json()) as { redriven: number; stopped?: string };
    expect(body.stopped).toMatch(/the node is stopping/);
    expect(body.redriven).toBeGreaterThan(0);
    expect(body.redriven).toBeLessThan(60);
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'stopping'",
    );
    expect(rows[0].n).toBe(body.redriven);
  });

  it("a 405 names the methods the resource takes (Allow)", async () => {
    for (const [path, method, allow] of [
      ["/api/overview", "POST", "GET, HEAD"],
      ["/api/groups/dl/history?since=-1h", "DELETE", "GET, HEAD"],
      ["/api/groups/dl/redrive", "GET", "POST"],
    ] as const) {
      const res = await fetch(`${base}${path}`, { method, signal: AbortSignal.timeout(10_000) });
      expect(res.status, path).toBe(405);
      expect(res.headers.get("allow"), path).toBe(allow);
    }
  });

  it("while PostgreSQL does not answer at all, requests answer 503 within the deadline", async () => {
    // Accepts connections and never answers, as a SIGSTOPped PostgreSQL's kernel does.
    const sockets: net.Socket[] = [];
    const hung = net.createServer((s) => {
      sockets.push(s);
      s.on("error", () => undefined);
    });
    await new Promise<void>((r) => hung.listen(0, "127.0.0.1", r));
    const pool = new pg.Pool({
      connectionString: `postgres://u:p@127.0.0.1:${(hung.address() as net.AddressInfo).port}/db`,
      max: 2,
    });
    pool.on("error", () => undefined);
    const frozen = await startTestAdminServer(pool, { requestTimeoutMs: 1_000 });
    try {
      for (const path of ["/api/overview", "/api/groups/dl/dead-letters", `/messages/${"a".repeat(32)}`]) {
        const started = Date.now();
        const res = await fetch(`http://127.0.0.1:${frozen.address.port}${path}`, {
          signal: AbortSignal.timeout(20_000),
        });
        // Before: no answer (the fetch gave up after 20 s).
        expect(res.status, path).toBe(503);
        expect(await res.json(), path).toMatchObject({
          code: "KQ_STORE_FAILED",
          error: expect.stringMatching(/not answering: no answer from PostgreSQL within 1000 ms/),
        });
        expect(Date.now() - started, path).toBeLessThan(5_000);
      }
    } finally {
      await frozen.close();
      for (const s of sockets) s.destroy();
      hung.close();
      await pool.end().catch(() => undefined);
    }
  }, 90_000);

  it("requests during a hang take none of the node's connections and keep none after their 503", async () => {
    // A proxy in front of the test database that can stop passing bytes: established
    // connections go silent, as with a SIGSTOPped PostgreSQL.
    const target = new URL(db.url);
    // The test server is reached through its socket directory (the URL's host) or over TCP.
    const host = decodeURIComponent(target.hostname);
    const connectTarget = () =>
      host.startsWith("/")
        ? net.connect(`${host}/.s.PGSQL.${target.port}`)
        : net.connect(Number(target.port), host);
    let frozen = false;
    const pairs: [net.Socket, net.Socket][] = [];
    const proxy = net.createServer((client) => {
      const server = connectTarget();
      for (const s of [client, server]) s.on("error", () => undefined);
      client.on("close", () => server.destroy());
      server.on("close", () => client.destroy());
      client.pipe(server);
      server.pipe(client);
      pairs.push([client, server]);
      if (frozen) for (const s of [client, server]) s.pause();
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const viaProxy = new URL(db.url);
    viaProxy.hostname = "127.0.0.1";
    viaProxy.port = String((proxy.address() as net.AddressInfo).port);
    const nodePool = createPool(viaProxy.toString(), { max: 10 });
    const requestPool = createPool(viaProxy.toString(), {
      max: 4,
      queryTimeoutMs: 1_000,
      connectTimeoutMs: 1_000,
    });
    const logged: { msg: string }[] = [];
    const node = await startAdminServer({
      host: "127.0.0.1",
      port: 0,
      pool: nodePool,
      requestPools: [requestPool],
      metrics: idleMetricsSource(),
      log: pino({ level: "info" }, { write: (l: string) => void logged.push(JSON.parse(l)) }),
      processMetrics: false,
      requestTimeoutMs: 1_000,
      healthTimeoutMs: 1_000,
    });
    const get = (path: string) =>
      fetch(`http://127.0.0.1:${node.address.port}${path}`, { signal: AbortSignal.timeout(20_000) });
    const checkedOut = (pool: pg.Pool) => pool.totalCount - pool.idleCount;
    try {
      const first = await get("/api/bindings");
      expect(first.status, await first.text()).toBe(200);
      frozen = true;
      for (const pair of pairs) for (const s of pair) s.pause();
      const paths = [
        "/api/bindings",
        "/api/groups/dl/dead-letters",
        `/messages/${"b".repeat(32)}`,
        "/healthz",
      ];
      // Twelve requests, more than either pool holds: a load balancer's probes and an operator's
      // refreshes during a long hang.
      const answers = await Promise.all([...paths, ...paths, ...paths].map((p) => get(p)));
      expect(answers.map((a) => a.status)).toEqual(Array(12).fill(503));
      // Before: every request read through the node's pool, and each kept its connection until
      // the server answered again (10 of 10 taken, 2 requests queued for one). Now the node's
      // pool holds at most its backlog sampler's one statement (one sample at a time).
      expect(checkedOut(nodePool)).toBeLessThanOrEqual(1);
      expect(nodePool.waitingCount).toBe(0);
      // The request pool dropped the connections whose statements got no answer, and the requests
      // queued for one gave up (each within a deadline: a few waves of 4).
      await expect
        .poll(() => checkedOut(requestPool) + requestPool.waitingCount, { timeout: 15_000 })
        .toBe(0);
      frozen = false;
      for (const pair of pairs) for (const s of pair) s.resume();
      expect((await get("/api/bindings")).status).toBe(200);
      expect((await get("/healthz")).status).toBe(200);
      // Three 503s of /healthz during the hang: said once, and once that it answers again (before:
      // nothing in the log at all).
      const health = logged.filter((l) => l.msg.startsWith("/healthz"));
      expect(health.map((l) => l.msg)).toEqual([
        "/healthz answers 503: the store is not answering",
        "/healthz answers ok again",
      ]);
    } finally {
      frozen = false;
      for (const pair of pairs) for (const s of pair) s.destroy();
      await node.close();
      await Promise.all([nodePool.end(), requestPool.end()].map((p) => p.catch(() => undefined)));
      proxy.close();
    }
  }, 90_000);
});
