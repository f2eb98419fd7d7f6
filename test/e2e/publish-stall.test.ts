/**
 * A publish that waits on PostgreSQL (a table lock held by another session: `SELECT 1` still
 * answers) is visible: /healthz answers 503 naming the wait, and the log says publishes cannot be
 * stored, then that they are again (before: 200 on every probe and no line for the whole stall,
 * while producers' sends timed out).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { freePort } from "../support/zookeeper.js";

let db: TestDatabase;
let broker: BrokerProcess | undefined;
let producer: KiteqConnection | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  producer?.close();
  await broker?.kill();
  await db?.drop();
});

it("a publish batch waiting on a table lock makes /healthz 503 and is logged, until it is stored", async () => {
  const adminPort = await freePort();
  broker = await startBrokerProcess(["--db", db.url, "--recieve-permits-per-second", "0"], {
    admin: `127.0.0.1:${adminPort}`,
  });
  producer = await KiteqConnection.connect({
    host: broker.host,
    port: broker.port,
    groupId: "p",
    heartbeatMs: 0,
  });
  const health = async () => {
    const res = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
    return { status: res.status, body: (await res.json()) as { error?: string } };
  };
  expect((await health()).status).toBe(200);

  const holder = await db.pool.connect();
  await holder.query("BEGIN");
  await holder.query("LOCK TABLE message_ids IN ACCESS EXCLUSIVE MODE");
  const send = producer.publish(buildHeader({ topic: "t", messageType: "m", groupId: "p" }), "x");
  let seen: { status: number; body: { error?: string } } | undefined;
  await waitFor(
    async () => {
      seen = await health();
      return seen.status === 503;
    },
    15_000,
    "/healthz 503 while the publish waits",
  );
  expect(seen!.body.error).toMatch(/a publish batch has waited \d+\.\d s for PostgreSQL/);
  await waitFor(
    () => broker!.logs.some((l) => l.msg === "publishes cannot be stored now; /healthz answers 503"),
    5_000,
    "stall logged",
  );
  await holder.query("COMMIT");
  holder.release();
  expect((await send).status).toBe(true);
  await waitFor(async () => (await health()).status === 200, 10_000, "/healthz 200 again");
  await waitFor(
    () => broker!.logs.some((l) => l.msg === "publishes are stored again"),
    5_000,
    "recovery logged",
  );
}, 60_000);

it("publishes of large bodies waiting on the store are bounded in bytes: beyond 64 MiB they are refused at once", async () => {
  broker ??= await startBrokerProcess(["--db", db.url, "--recieve-permits-per-second", "0"]);
  const flooder = await KiteqConnection.connect({
    host: broker.host,
    port: broker.port,
    groupId: "p",
    heartbeatMs: 0,
  });
  const holder = await db.pool.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("LOCK TABLE message_ids IN ACCESS EXCLUSIVE MODE");
    // 160 bodies of 1 MiB, pipelined while nothing can be stored. Before: all 160 held in the
    // broker's memory (one client pipelining such bodies took a broker to 4.8 GB), none refused
    // below 50,000 messages.
    const body = Buffer.alloc(1024 * 1024, 7);
    const sends = Array.from({ length: 160 }, () =>
      flooder.publish(buildHeader({ topic: "t", messageType: "m", groupId: "p" }), body),
    );
    const refusals: string[] = [];
    for (const s of sends) {
      void s.then((a) => {
        if (!a.status) refusals.push(a.feedback);
      });
    }
    await waitFor(() => refusals.length >= 160 - 64, 30_000, "the sends beyond 64 MiB refused");
    expect(refusals.length).toBeLessThanOrEqual(160 - 60);
    for (const r of refusals) expect(r).toMatch(/^store busy: 6\d MiB of publishes waiting, retry later$/);
    await holder.query("COMMIT");
    // What was taken is stored once the store answers (in transactions of at most 16 MiB).
    const answers = await Promise.all(sends);
    const stored = answers.filter((a) => a.status).length;
    expect(stored).toBe(160 - refusals.length);
    const { rows } = await db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM messages WHERE topic = 't' AND length(body) = 1048576",
    );
    expect(rows[0]!.n).toBe(stored);
  } finally {
    await holder.query("ROLLBACK").catch(() => undefined);
    holder.release();
    flooder.close();
  }
}, 90_000);
