/**
 * Two broker processes on a store of three shards (three databases; static registry): consumers
 * of one group on both nodes, one node killed with kill -9 mid-stream. Every acked message is
 * delivered, duplicates are counted, every shard holds messages and owes nothing at the end.
 * Also: a node given the shards in another order refuses to start, one line, exit code 2.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import type { Header } from "../../src/protocol/messages.js";
import { shardOf } from "../../src/store/shard-hash.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const TOTAL = 12_000;
const LEASE_SECONDS = 3;

describe("e2e: two nodes, three shards", () => {
  const shards: TestDatabase[] = [];
  const brokers: BrokerProcess[] = [];
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 3; i++) shards.push(await createTestDatabase());
    // Bindings live in shard 0.
    await bind(shards[0]!.pool, { groupId: "g", topic: "t", messageType: "m" });
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    for (const b of brokers) await b.kill();
    for (const s of shards) await s.drop();
  });

  const start = async (nodeId: string, urls = shards.map((s) => s.url)) => {
    const b = await startBrokerProcess([
      // Whitespace-separated in one value, and repeated --db: both add shards in order.
      "--db",
      urls.slice(0, 2).join(" "),
      "--db",
      urls[2]!,
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

  it("kill -9 of one node mid-stream: every acked message delivered from every shard, duplicates counted", async () => {
    const a = await start("node-a");
    const b = await start("node-b");
    const onA = await recordingConsumer(a.port, "g", () => true);
    const onB = await recordingConsumer(b.port, "g", () => true);
    conns.push(onA.conn, onB.conn);
    // Slow acks on node A keep deliveries in flight there (in every shard) when it dies.
    onA.conn.onMessage((m) => {
      onA.received.push(m);
      return new Promise((r) => setTimeout(() => r(true), 50));
    });
    const producers = await Promise.all(
      [a, b, a, b].map((n) =>
        KiteqConnection.connect({ host: n.host, port: n.port, groupId: "p", heartbeatMs: 0 }),
      ),
    );
    const spare = await KiteqConnection.connect({ host: b.host, port: b.port, groupId: "p", heartbeatMs: 0 });
    conns.push(...producers, spare);

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

    const owed = async () => {
      let n = 0;
      for (const s of shards) {
        const { rows } = await s.pool.query("SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'g'");
        n += rows[0].n as number;
      }
      return n;
    };
    await waitFor(async () => (await owed()) === 0, 40_000, "every delivery of group g acked in every shard");
    // Every message in its own shard, acked there.
    const perShard: number[] = [];
    for (const [i, s] of shards.entries()) {
      const { rows } = await s.pool.query<{ n: number; wrong: number }>(
        `SELECT count(DISTINCT m.message_id)::int AS n,
                count(DISTINCT m.message_id) FILTER (WHERE NOT (m.message_id = ANY($1)))::int AS wrong
           FROM messages m JOIN message_events e ON e.message_pk = m.id AND e.kind = 'acked' AND e.group_id = 'g'`,
        [[...acked].filter((id) => shardOf(id, 3) === i)],
      );
      expect(rows[0]!.wrong).toBe(0);
      perShard.push(rows[0]!.n);
    }
    expect(perShard.reduce((x, y) => x + y, 0)).toBe(TOTAL);
    for (const n of perShard) expect(n).toBeGreaterThan(TOTAL / 5);
    const received = [...onA.ids(), ...onB.ids()];
    const unique = new Set(received);
    for (const id of acked) expect(unique.has(id)).toBe(true);
    const redelivered = onB.received.filter((m) => heldByA.has(m.header.messageId));
    const redeliveredShards = new Set(redelivered.map((m) => shardOf(m.header.messageId, 3)));
    console.log(
      `two nodes, three shards: ${TOTAL} acked (per shard ${perShard.join(" / ")}), ` +
        `${received.length - unique.size} duplicates delivered, ${redelivered.length} taken over from the killed node ` +
        `(shards ${[...redeliveredShards].sort().join(",")}), ${Date.now() - killedAt} ms from the kill to the end`,
    );
    expect(redelivered.length).toBeGreaterThan(0);
  }, 60_000);

  it("an upper-case messageId is stored in the shard of its lower-case form (as history reads it)", async () => {
    const b =
      brokers.find((x) => x.child.exitCode === null && x.child.signalCode === null) ??
      (await start("node-c"));
    const conn = await KiteqConnection.connect({ host: b.host, port: b.port, groupId: "p", heartbeatMs: 0 });
    conns.push(conn);
    for (let i = 0; i < 6; i++) {
      const h = buildHeader({ topic: "t", messageType: "m", groupId: "p" });
      const upper = { ...h, messageId: h.messageId.toUpperCase() };
      const ack = await conn.publish(upper, "x");
      expect(ack.status).toBe(true);
      const home = shardOf(h.messageId, 3);
      for (const [i, s] of shards.entries()) {
        const { rows } = await s.pool.query("SELECT 1 FROM message_ids WHERE message_id = $1", [h.messageId]);
        expect(rows.length).toBe(i === home ? 1 : 0);
      }
    }
  }, 30_000);

  it("a node given the shards in another order refuses to start: one line, exit code 2", async () => {
    const urls = shards.map((s) => s.url);
    const err = await start("node-x", [urls[0]!, urls[2]!, urls[1]!]).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeDefined();
    expect(err!.message).toMatch(/broker exited with 2 before start/);
    const line = err!.message.split("before start: ")[1]!.trim();
    expect(line.split("\n")).toHaveLength(1);
    expect(line).toMatch(
      /^kiteq-pg: shard 1 \(.*\) differs from the list recorded at creation: it is shard 2/,
    );
    expect(line).not.toContain("password");
  }, 30_000);
});
