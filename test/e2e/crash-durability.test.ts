import { mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";

const TOTAL = 10_000;
const CONNECTIONS = 4;

describe("e2e: acked publishes survive kill -9 (embedded PostgreSQL)", () => {
  const dirs: string[] = [];
  const brokers: BrokerProcess[] = [];
  afterAll(async () => {
    for (const b of brokers) await b.kill();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it("finds every acked message and its received event after restart: 0 lost", async () => {
    const dir = await mkdtemp(path.resolve(".tmp", "crash-"));
    dirs.push(dir);
    const args = ["--data-dir", dir, "--recieve-permits-per-second", "0"];
    const first = await startBrokerProcess(args);
    brokers.push(first);
    const conns = await Promise.all(
      Array.from({ length: CONNECTIONS }, () =>
        KiteqConnection.connect({ host: first.host, port: first.port, groupId: "p1", heartbeatMs: 0 }),
      ),
    );
    const acked: string[] = [];
    const perConn = TOTAL / CONNECTIONS;
    await Promise.all(
      conns.map(async (conn) => {
        // 64 in flight per connection, like a pipelining producer.
        let next = 0;
        const worker = async () => {
          while (next < perConn) {
            next++;
            const header = buildHeader({ topic: "trade", messageType: "pay", groupId: "p1" });
            const ack = await conn.publish(header, Buffer.from(`body-${header.messageId}`));
            expect(ack.status).toBe(true);
            acked.push(ack.messageId);
          }
        };
        await Promise.all(Array.from({ length: 64 }, worker));
      }),
    );
    await first.kill();
    expect(acked).toHaveLength(TOTAL);
    for (const c of conns) c.close();

    const second = await startBrokerProcess(args);
    brokers.push(second);
    expect(second.embeddedPgPort).toBeDefined();
    // The killed broker's PostgreSQL outlived it; the new broker must have stopped and restarted it.
    expect(second.logs.some((l) => String(l.msg).startsWith("stopping an orphaned PostgreSQL"))).toBe(true);
    const client = new pg.Client({
      host: "127.0.0.1",
      port: second.embeddedPgPort,
      user: "postgres",
      // The embedded server's random password, from the 0600 file in its data directory.
      password: (await readFile(path.join(dir, "pg", "kiteq-password"), "utf8")).trim(),
      database: "kiteq",
    });
    await client.connect();
    const { rows } = await client.query<{ messages: number; received: number }>(
      `SELECT count(DISTINCT m.message_id)::int AS messages,
              count(e.*) FILTER (WHERE e.kind = 'received')::int AS received
         FROM messages m LEFT JOIN message_events e ON e.message_pk = m.id
        WHERE m.message_id = ANY($1)`,
      [acked],
    );
    await client.end();
    expect(rows[0]).toEqual({ messages: TOTAL, received: TOTAL });
    expect(await second.stop()).toBe(0);
  });

  it("its PostgreSQL killed under the running broker: started again on its own, nothing acked lost, publishing and delivery resume", async () => {
    const dir = await mkdtemp(path.resolve(".tmp", "pg-killed-"));
    dirs.push(dir);
    const broker = await startBrokerProcess(["--data-dir", dir, "--recieve-permits-per-second", "0"]);
    brokers.push(broker);
    const passwordFile = path.join(dir, "pg", "kiteq-password");
    const db = new pg.Pool({
      host: "127.0.0.1",
      port: broker.embeddedPgPort,
      user: "postgres",
      password: (await readFile(passwordFile, "utf8")).trim(),
      database: "kiteq",
      max: 1,
    });
    db.on("error", () => undefined); // its connection dies with the server
    try {
      await bind(db, { groupId: "g", topic: "trade", messageType: "pay" });
      const consumer = await recordingConsumer(broker.port, "g");
      const producer = await KiteqConnection.connect({
        host: broker.host,
        port: broker.port,
        groupId: "p1",
        heartbeatMs: 0,
      });
      const publish = async () => {
        const header = buildHeader({ topic: "trade", messageType: "pay", groupId: "p1" });
        return { id: header.messageId, ack: await producer.publish(header, "x") };
      };
      // The broker learns the binding by NOTIFY: publish until a message reaches the consumer.
      await waitFor(
        async () => {
          const { id } = await publish();
          await new Promise((r) => setTimeout(r, 100));
          return consumer.ids().includes(id);
        },
        30_000,
        "the binding in effect",
      );
      const before: string[] = [];
      for (let i = 0; i < 200; i++) {
        const { id, ack } = await publish();
        expect(ack.status).toBe(true);
        before.push(id);
      }

      const postmaster = Number(
        (await readFile(path.join(dir, "pg", "postmaster.pid"), "utf8")).split("\n")[0],
      );
      process.kill(postmaster, "SIGKILL");
      const killedAt = Date.now();
      await waitFor(
        () => broker.logs.some((l) => l.msg === "embedded PostgreSQL started again"),
        30_000,
        "the embedded PostgreSQL started again",
      );
      const restartMs = Date.now() - killedAt;
      expect(
        broker.logs.some(
          (l) => String(l.msg).startsWith("embedded PostgreSQL exited unexpectedly") && l.level === 50,
        ),
      ).toBe(true);
      expect(broker.child.exitCode).toBeNull();

      // Publishing resumes (a publish during the gap is answered false, never true unstored).
      const after: string[] = [];
      await waitFor(
        async () => {
          const { id, ack } = await publish();
          if (ack.status) after.push(id);
          return after.length >= 200;
        },
        30_000,
        "200 publishes acked after the restart",
      );
      await waitFor(
        () => [...before, ...after].every((id) => consumer.ids().includes(id)),
        30_000,
        "every acked message delivered",
      );
      const { rows } = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM messages WHERE message_id = ANY($1)",
        [[...before, ...after]],
      );
      expect(rows[0]!.n).toBe(400);
      console.log(
        `embedded PostgreSQL killed: started again after ${restartMs} ms, 400 acked, all delivered`,
      );
      producer.close();
      consumer.conn.close();
      expect(await broker.stop()).toBe(0);
    } finally {
      await db.end().catch(() => undefined);
    }
  });
});
