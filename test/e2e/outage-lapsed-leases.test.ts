/**
 * The store stopped for longer than a lease while a node's consumer held its pushes: the acks
 * answered during the outage wait in that node's retries, and the leases it could not renew ran
 * out meanwhile. When the store comes back, the other node must not push those messages a second
 * time: the holder writes its acks (and renews what is still in flight) first.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { silentLogger } from "../../src/log.js";
import { createPool, ensurePartitions, runMigrations } from "../../src/store/db.js";
import { type EmbeddedPostgresServer, freePort, startEmbeddedPostgres } from "../../src/store/embedded.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { removePlacedDataDir } from "../support/placed-dirs.js";

const LEASE_SECONDS = 3;
const OUTAGE_MS = 7_000;
const MESSAGES = 40;

describe("e2e: the store down for longer than a lease while a node's consumer holds its pushes", () => {
  let dir: string;
  let pgPort: number;
  let server: EmbeddedPostgresServer | undefined;
  const brokers: BrokerProcess[] = [];
  const conns: KiteqConnection[] = [];

  const startServer = async () => {
    server = await startEmbeddedPostgres({
      dataDir: path.join(dir, "pg"),
      port: pgPort,
      logger: silentLogger,
    });
  };

  beforeAll(async () => {
    await mkdir(path.resolve(".tmp"), { recursive: true });
    dir = await mkdtemp(path.resolve(".tmp", "outage-acks-"));
    pgPort = await freePort();
    await startServer();
    const pool = createPool(server!.tcpUrl("kiteq"), { max: 1, name: "test" });
    try {
      await runMigrations(pool, silentLogger);
      await ensurePartitions(pool, new Date());
      await bind(pool, { groupId: "g", topic: "t", messageType: "m" });
    } finally {
      await pool.end();
    }
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    for (const b of brokers) await b.kill();
    if (server !== undefined) {
      await server.stop().catch(() => undefined);
      await removePlacedDataDir(server.dataDir, dir).catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("the other node leaves the lapsed leases to their holder, whose acks then end them: nothing pushed twice", async () => {
    // Over TCP with a fixed port: the URL stays the same when the server comes back.
    const url = server!.tcpUrl("kiteq");
    const start = async (nodeId: string) => {
      const b = await startBrokerProcess([
        "--db",
        url,
        "--node-id",
        nodeId,
        "--lease-seconds",
        String(LEASE_SECONDS),
        "--recover-seconds",
        "1",
        "--recieve-permits-per-second",
        "0",
      ]);
      brokers.push(b);
      return b;
    };
    const a = await start("hold-a");
    const b = await start("hold-b");
    // A node with no consumer: what is published there is left for the others to claim.
    const c = await start("hold-c");
    // A's consumer holds every push until told; B's answers at once.
    let release!: () => void;
    const released = new Promise<boolean>((resolve) => {
      release = () => resolve(true);
    });
    const onA = await recordingConsumer(a.port, "g", () => released);
    conns.push(onA.conn);
    const onB = await recordingConsumer(b.port, "g");
    conns.push(onB.conn);
    const producer = await KiteqConnection.connect({
      host: a.host,
      port: a.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    conns.push(producer);

    const ids: string[] = [];
    for (let i = 0; i < MESSAGES; i++) {
      const h = buildHeader({ topic: "t", messageType: "m", groupId: "p" });
      expect((await producer.publish(h, `m${i}`)).status).toBe(true);
      ids.push(h.messageId);
    }
    await waitFor(() => onA.received.length === MESSAGES, 10_000, "node A's consumer got every message");
    expect(onB.ids()).toEqual([]);

    // The store goes away; A's consumer answers now, and A cannot write the acks.
    await server!.stop();
    release();
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    await startServer();
    // Traffic goes on: a publish on C wakes the nodes' claims (with the lapsed leases due).
    const later = await KiteqConnection.connect({ host: c.host, port: c.port, groupId: "p", heartbeatMs: 0 });
    conns.push(later);
    await waitFor(
      async () =>
        (await later.publish(buildHeader({ topic: "t", messageType: "m", groupId: "p" }), "after")).status,
      15_000,
      "a publish after the store came back",
    );

    // Every ack reaches the store...
    let takenByB: Record<string, number> = {};
    const pool = createPool(url, { max: 1, name: "test" });
    try {
      await waitFor(
        async () => {
          const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM deliveries");
          return rows[0]!.n === 0;
        },
        30_000,
        "every delivery ended",
      );
      const { rows } = await pool.query<{ n: number }>(
        "SELECT count(DISTINCT message_pk)::int AS n FROM message_events WHERE kind = 'acked'",
      );
      expect(rows[0]!.n).toBe(MESSAGES + 1);
      // Nor taken over by node B (its history rows say so even when a push raced an ack).
      const byB = await pool.query<{ kind: string; n: number }>(
        "SELECT kind::text, count(*)::int AS n FROM message_events WHERE node_id = 'hold-b' AND kind IN ('taken_over', 'delivered') " +
          "AND message_pk IN (SELECT message_pk FROM message_ids WHERE message_id = ANY($1)) GROUP BY 1",
        [ids],
      );
      takenByB = Object.fromEntries(byB.rows.map((r) => [r.kind, r.n]));
    } finally {
      await pool.end();
    }
    // ... and none of the messages was pushed a second time, by either node.
    await new Promise((r) => setTimeout(r, 1000));
    const pushedAgainByB = onB.ids().filter((id) => ids.includes(id));
    const pushedTwiceByA = onA.received.length - new Set(onA.ids()).size;
    console.log(
      `store down ${OUTAGE_MS} ms (lease ${LEASE_SECONDS} s): pushed again by node B ${pushedAgainByB.length}, ` +
        `twice by node A ${pushedTwiceByA}; node B's history rows ${JSON.stringify(takenByB)}`,
    );
    expect(takenByB).toEqual({});
    expect(pushedAgainByB).toEqual([]);
    expect(pushedTwiceByA).toBe(0);
  }, 90_000);
});
