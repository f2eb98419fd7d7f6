import { mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";

const TOTAL = 10_000;
const CONNECTIONS = 4;

describe("e2e: acked publishes survive kill -9 (embedded PostgreSQL)", () => {
  let dir: string | undefined;
  const brokers: BrokerProcess[] = [];
  afterAll(async () => {
    for (const b of brokers) await b.kill();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("finds every acked message and its received event after restart: 0 lost", async () => {
    dir = await mkdtemp(path.resolve(".tmp", "crash-"));
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
});
