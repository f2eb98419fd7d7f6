/**
 * The admin API of one node shows the whole cluster: two broker processes on one database
 * (static registry), a consumer on each; node A's GET /api/groups lists both nodes' consumers
 * and rates from node B's heartbeat snapshots, its overview both nodes with their versions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BROKER_VERSION } from "../../src/admin/version.js";
import { createBinding } from "../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { freePort } from "../../src/store/embedded.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

interface GroupJson {
  groupId: string;
  consumers: Record<string, number>;
  rates: { delivered: number; acked: number };
}
interface OverviewJson {
  nodes: { nodeId: string; liveness: string; version: string | null; self: boolean }[];
  rates: { publishPerSecond: number; pushPerSecond: number; scope: string };
}

describe("e2e: the admin API shows every node of the cluster", () => {
  let db: TestDatabase;
  const brokers: BrokerProcess[] = [];
  const conns: KiteqConnection[] = [];
  let adminA = 0;

  beforeAll(async () => {
    db = await createTestDatabase();
    for (const groupId of ["shared", "only-b"]) {
      await upsertBinding(
        db.pool,
        createBinding({ groupId, topic: "t", messageType: "m", bindType: 0, persistent: true }),
        "cli",
        new Date(),
      );
    }
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    for (const b of brokers) await b.stop();
    await db.drop();
  });

  const start = async (nodeId: string, admin: number) => {
    const b = await startBrokerProcess([
      "--db",
      db.url,
      "--node-id",
      nodeId,
      "--admin",
      `127.0.0.1:${admin}`,
    ]);
    brokers.push(b);
    return b;
  };
  const get = async <T>(path: string): Promise<T> => {
    const res = await fetch(`http://127.0.0.1:${adminA}${path}`);
    expect(res.status).toBe(200);
    return (await res.json()) as T;
  };
  const group = async (id: string) =>
    (await get<{ groups: GroupJson[] }>("/api/groups")).groups.find((g) => g.groupId === id);

  it("GET /api/groups on node A: both nodes' consumers, and node B's rates", async () => {
    adminA = await freePort();
    const a = await start("a", adminA);
    const b = await start("b", await freePort());
    const onA = await recordingConsumer(a.port, "shared");
    const onB = await recordingConsumer(b.port, "shared");
    const onlyB = await recordingConsumer(b.port, "only-b");
    conns.push(onA.conn, onB.conn, onlyB.conn);

    // Node B writes its consumers with its next heartbeat (every 5 s).
    await waitFor(
      async () => {
        const g = await group("shared");
        return g?.consumers.a === 1 && g.consumers.b === 1;
      },
      20_000,
      "node A to show one consumer of group shared on each node",
    );
    expect((await group("only-b"))?.consumers).toEqual({ a: 0, b: 1 });

    // Messages for only-b are pushed by node B only: node A knows their rate from B's snapshots.
    const producer = await KiteqConnection.connect({
      host: b.host,
      port: b.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    conns.push(producer);
    for (let i = 0; i < 20; i++) {
      const ack = await producer.publish(buildHeader({ topic: "t", messageType: "m", groupId: "p" }), "x");
      expect(ack.status).toBe(true);
    }
    await waitFor(() => onlyB.received.length >= 20, 20_000, "node B to deliver 20 messages to only-b");
    await waitFor(
      async () => ((await group("only-b"))?.rates.delivered ?? 0) > 0,
      20_000,
      "node A to show node B's delivery rate of only-b",
    );
    const rates = (await group("only-b"))?.rates;
    expect(rates?.acked).toBeGreaterThan(0);
  }, 120_000);

  it("GET /api/overview on node A: both nodes alive, with their versions", async () => {
    const o = await get<OverviewJson>("/api/overview");
    expect(o.nodes.map((n) => [n.nodeId, n.liveness, n.version, n.self])).toEqual([
      ["a", "alive", BROKER_VERSION, true],
      ["b", "alive", BROKER_VERSION, false],
    ]);
    expect(o.rates.scope).toBe("cluster");
  });
});
