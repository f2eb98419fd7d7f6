/**
 * SIGTERM while the database server does not answer at all (a hung server: a SIGSTOPped
 * PostgreSQL, a dead network path). The publish in flight holds up the drain for the whole
 * grace period; past it the node must close its client connections at once (before: only at the
 * very end, so producers kept sending to it) and be gone within FORCE_STOP_MS (before: 7 s more,
 * spent on a cancel connection, a drain wait and cleanups against the silent server).
 */
import net from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { FORCE_STOP_MS } from "../../src/server/broker.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

/** A TCP proxy to PostgreSQL that can be frozen: connections stay open, nothing goes through. */
async function freezableProxy(target: net.NetConnectOpts): Promise<{
  port: number;
  freeze(): void;
  close(): void;
}> {
  let frozen = false;
  const sockets: net.Socket[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    sockets.push(client, upstream);
    for (const s of [client, upstream]) s.on("error", () => undefined);
    client.on("data", (d) => {
      if (!frozen) upstream.write(d);
    });
    upstream.on("data", (d) => {
      if (!frozen) client.write(d);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => {
      frozen = true;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

let db: TestDatabase;
let proxy: Awaited<ReturnType<typeof freezableProxy>> | undefined;
let broker: BrokerProcess | undefined;
let producer: KiteqConnection | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  producer?.close();
  await broker?.kill();
  proxy?.close();
  await db?.drop();
});

it("past the grace period: client connections closed at once, the node gone within FORCE_STOP_MS", async () => {
  const url = new URL(db.url);
  const host = decodeURIComponent(url.hostname);
  const port = Number(url.port || 5432);
  proxy = await freezableProxy(host.startsWith("/") ? { path: `${host}/.s.PGSQL.${port}` } : { host, port });
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  const grace = 3;
  // Bound before the broker starts: bound after it, a publish could precede the reload and be owed to no one.
  await bind(db.pool, { groupId: "g", topic: "t", messageType: "m" });
  broker = await startBrokerProcess([
    "--db",
    url.toString(),
    "--shutdown-grace-seconds",
    String(grace),
    "--recieve-permits-per-second",
    "0",
  ]);
  producer = await KiteqConnection.connect({
    host: broker.host,
    port: broker.port,
    groupId: "p",
    heartbeatMs: 0,
  });
  let closedAt: number | undefined;
  producer.onClose(() => {
    closedAt ??= Date.now();
  });
  // A consumer whose ack comes once the server is silent: it cannot be written before the stop.
  const consumer = await recordingConsumer(broker.port, "g");
  consumer.conn.onMessage(async (m) => {
    consumer.received.push(m);
    await new Promise((r) => setTimeout(r, 300));
    return true;
  });
  expect(
    (await producer.publish(buildHeader({ topic: "t", messageType: "m", groupId: "p" }), "y")).status,
  ).toBe(true);
  await waitFor(() => consumer.received.length === 1, 10_000, "the push");
  proxy.freeze();
  // A publish now waits on the silent server (its store ack never comes before the stop).
  void producer
    .publish(buildHeader({ topic: "t", messageType: "m", groupId: "p" }), "x")
    .catch(() => undefined);
  await new Promise((r) => setTimeout(r, 300));
  const exited = new Promise<number | null>((resolve) => broker!.child.once("exit", (code) => resolve(code)));
  const stoppedAt = Date.now();
  broker.child.kill("SIGTERM");
  await waitFor(() => closedAt !== undefined, 20_000, "the client connection closed");
  // Before: closed only at the end of the forced stop, about 7 s after the grace period.
  expect(closedAt! - stoppedAt).toBeLessThan(grace * 1000 + 1_000);
  expect(await exited).toBe(0);
  expect(Date.now() - stoppedAt).toBeLessThan(grace * 1000 + FORCE_STOP_MS + 1_000);
  expect(broker.logs.map((l) => l.msg)).toContain(
    "shutdown grace period over: cancelling the statements still running and stopping",
  );
  // What it left behind is said (before: only "cleanup failed"): the ack, and the delivery it holds.
  const left = broker.logs.find((l) => typeof l.msg === "string" && l.msg.startsWith("stopped with "));
  expect(left).toMatchObject({ unwrittenOutcomes: 1, heldDeliveries: 1 });
  consumer.conn.close();
}, 60_000);
