/**
 * Two broker processes on one PostgreSQL (static registry, no ZooKeeper): consumers of one group
 * on both nodes share the stream; one node is killed with kill -9 mid-stream and the other
 * delivers what it held once its lease ran out. Also: with no NOTIFY at all, the poll delivers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import type { Header } from "../../src/protocol/messages.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const TOTAL = 20_000;
const LEASE_SECONDS = 3;

describe("e2e: two nodes, one database", () => {
  let db: TestDatabase;
  const brokers: BrokerProcess[] = [];
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    await bind(db.pool, { groupId: "g", topic: "t", messageType: "m" });
    await bind(db.pool, { groupId: "quiet", topic: "q", messageType: "m" });
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    for (const b of brokers) await b.kill();
    await db.drop();
  });

  const start = async (nodeId: string) => {
    const b = await startBrokerProcess([
      "--db",
      db.url,
      "--node-id",
      nodeId,
      "--lease-seconds",
      String(LEASE_SECONDS),
      "--recover-seconds",
      "1",
      "--delivery-seconds",
      "2",
      "--recieve-permits-per-second",
      "0",
    ]);
    brokers.push(b);
    return b;
  };

  it("kill -9 of one node mid-stream: the other delivers its in-flight messages after the lease, 0 lost", async () => {
    const a = await start("node-a");
    const b = await start("node-b");
    // Slow acks on node A keep deliveries in flight there when it dies.
    const onA = await recordingConsumer(a.port, "g", () => true);
    const onB = await recordingConsumer(b.port, "g", () => true);
    conns.push(onA.conn, onB.conn);
    onA.conn.onMessage((m) => {
      onA.received.push(m);
      return new Promise((r) => setTimeout(() => r(true), 50));
    });
    const producers = await Promise.all(
      [a, b, a, b].map((n) =>
        KiteqConnection.connect({ host: n.host, port: n.port, groupId: "p", heartbeatMs: 0 }),
      ),
    );
    conns.push(...producers);
    const spare = await KiteqConnection.connect({ host: b.host, port: b.port, groupId: "p", heartbeatMs: 0 });
    conns.push(spare);

    const headers: Header[] = Array.from({ length: TOTAL }, () =>
      buildHeader({ topic: "t", messageType: "m", groupId: "p" }),
    );
    const acked = new Set<string>();
    let killedAt = 0;
    let next = 0;
    const worker = async (conn: KiteqConnection) => {
      while (next < TOTAL) {
        const h = headers[next++]!;
        let ack = await conn.publish(h, "x").catch(() => undefined);
        // A publish whose ack was lost with node A is re-sent to node B: stored once (idempotent).
        if (ack === undefined) ack = await spare.publish(h, "x");
        expect(ack.status).toBe(true);
        acked.add(h.messageId);
        if (acked.size === TOTAL / 2 && killedAt === 0) {
          killedAt = Date.now();
          void a.kill();
        }
      }
    };
    await Promise.all(producers.flatMap((p) => Array.from({ length: 16 }, () => worker(p))));
    expect(acked.size).toBe(TOTAL);
    const heldByA = new Set(onA.ids());

    await waitFor(
      async () => {
        const { rows } = await db.pool.query(
          "SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'g'",
        );
        return rows[0].n === 0;
      },
      60_000,
      "every delivery of group g acked",
    );
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(DISTINCT m.message_id)::int AS n FROM messages m
         JOIN message_events e ON e.message_pk = m.id AND e.kind = 'acked' AND e.group_id = 'g'`,
    );
    expect(rows[0]!.n).toBe(TOTAL);
    const received = [...onA.ids(), ...onB.ids()];
    const unique = new Set(received);
    for (const id of acked) expect(unique.has(id)).toBe(true);
    const redelivered = onB.received.filter((m) => heldByA.has(m.header.messageId));
    // The killed node never wrote the outcome of its last pushes; node B's first push of one of
    // them is the takeover.
    const { rows: firstRedelivery } = await db.pool.query<{ at: Date }>(
      // A push is a delivered row, or the delivered_at of the acked row that carries it.
      `SELECT min(coalesce(e.delivered_at, e.at)) AS at FROM message_events e JOIN messages m ON m.id = e.message_pk
        WHERE (e.kind = 'delivered' OR e.delivered_at IS NOT NULL) AND e.node_id = 'node-b'
          AND m.message_id = ANY($1)`,
      [redelivered.map((m) => m.header.messageId)],
    );
    const takeoverMs = firstRedelivery[0]?.at ? firstRedelivery[0].at.getTime() - killedAt : Number.NaN;
    console.log(
      `two nodes: ${TOTAL} acked, ${received.length - unique.size} duplicates delivered, ` +
        `${redelivered.length} taken over from the killed node, takeover ${takeoverMs} ms (lease ${LEASE_SECONDS} s)`,
    );
    expect(redelivered.length).toBeGreaterThan(0);
    // Lease, plus one poll period and lease-renewal slack.
    expect(takeoverMs).toBeLessThan((LEASE_SECONDS + 3) * 1000);
  });

  it("with no NOTIFY at all, every message is still delivered by the poll", async () => {
    const b =
      brokers.find((x) => x.child.exitCode === null && x.child.signalCode === null) ??
      (await start("node-c"));
    const c = await recordingConsumer(b.port, "quiet");
    conns.push(c.conn);
    await new Promise((r) => setTimeout(r, 300));
    const now = new Date();
    // Messages stored without deliveries (so without NOTIFY), then deliveries inserted by hand
    // with no NOTIFY either: only the poll can find them.
    const recs = Array.from({ length: 100 }, () => {
      const h = buildHeader({ topic: "q", messageType: "m", groupId: "p" });
      return {
        messageId: h.messageId,
        topic: "q",
        messageType: "m",
        groupId: "p",
        commit: true,
        expiresAt: new Date(now.getTime() + 3600_000),
        deliverLimit: 10,
        createdAt: now,
        properties: [],
        snappy: false,
        bodyIsString: true,
        body: Buffer.from("quiet"),
        deliveries: [],
      };
    });
    await insertPublishBatch(db.pool, recs, { now, nodeId: "test", leaseUntil: now, firstTxCheckAt: now });
    await db.pool.query(
      `INSERT INTO deliveries (message_pk, group_id, message_stored_at, topic, next_attempt_at, expires_at, deliver_limit)
       SELECT id, 'quiet', stored_at, topic, $2, expires_at, deliver_limit FROM messages WHERE message_id = ANY($1)`,
      [recs.map((r) => r.messageId), now],
    );
    await waitFor(() => c.received.length >= 100, 10_000, "poll delivery");
    expect(new Set(c.ids()).size).toBe(100);
  });
});
