/**
 * startCluster in ZooKeeper mode against a real ZooKeeper and a real PostgreSQL, with a
 * recording stand-in for the dispatcher: bindings mirrored into the table (at start and on
 * change), a gone node's claims and transactions released, claims going on during an outage,
 * nothing written under /kiteq/pub (the producers' path), and a bounded failure when ZooKeeper does not answer.
 */
import type { Client } from "node-zookeeper-client";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { bindingsToJson, directBinding, fanoutBinding } from "../../../src/binding/binding.js";
import { loadConfig } from "../../../src/config/index.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";
import { type Logger, silentLogger } from "../../../src/log.js";
import { type ClusterDeps, type ClusterMembership, startCluster } from "../../../src/registry/cluster.js";
import { advertisedAddress } from "../../../src/registry/zk-cluster.js";
import { closeZooKeeper, connectZooKeeper } from "../../../src/registry/zk-connect.js";
import {
  zkCreate,
  zkExists,
  zkGetChildren,
  zkGetData,
  zkRemove,
  zkSetData,
} from "../../../src/registry/zk-ops.js";
import { ZooKeeperRegistry } from "../../../src/registry/zookeeper.js";
import { listBindings } from "../../../src/store/bindings.js";
import { createTestDatabase, type TestDatabase } from "../../support/db.js";
import { freePort, startZooKeeper, type TestZooKeeper, waitFor } from "../../support/zookeeper.js";

const SESSION_MS = 4_000;

let zk: TestZooKeeper;
let db: TestDatabase;
let raw: Client;
const running: { stop(): Promise<void> }[] = [];

/** What the cluster asked of the dispatcher and the transaction module. */
interface Calls {
  released: string[];
  releasedTx: string[];
}

async function cluster(
  port: number,
  zkConnect = zk.connectString,
  log: Logger = silentLogger,
  storeId?: string,
): Promise<ClusterMembership & Calls> {
  const { config } = loadConfig(
    ["--bind", `127.0.0.1:${port}`, "--registry", `zk://${zkConnect}?timeout=4s`, "--topics", "trade,order"],
    {},
  );
  const calls: Calls = { released: [], releasedTx: [] };
  const deps: ClusterDeps = {
    pool: db.pool,
    config,
    address: `127.0.0.1:${port}`,
    dispatcher: {
      requestClaim: () => undefined,
      takeOverNode: async (id) => {
        calls.released.push(id);
        return 0;
      },
    },
    releaseTransactionsOfNode: async (id) => void calls.releasedTx.push(id),
    storeId,
    log,
  };
  const membership = await startCluster(deps);
  running.push(membership);
  return Object.assign(membership, calls);
}

const zkRows = async () =>
  (
    await db.pool.query<{ group_id: string; topic: string; message_type: string }>(
      "SELECT group_id, topic, message_type FROM bindings WHERE source = 'zk' ORDER BY 1, 2, 3",
    )
  ).rows.map((r) => `${r.group_id}/${r.topic}/${r.message_type}`);

beforeAll(async () => {
  [zk, db] = await Promise.all([startZooKeeper(), createTestDatabase()]);
  raw = await connectZooKeeper(zk.connectString, {
    sessionTimeoutMs: SESSION_MS,
    connectTimeoutMs: 3_000,
    retries: 3,
  });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
});

afterAll(async () => {
  if (raw) await closeZooKeeper(raw);
  await zk?.stop();
  await db?.drop();
});

describe("startCluster (ZooKeeper)", () => {
  it("mirrors every binding at start, then each group's change, into the bindings table", async () => {
    await zkCreate(raw, "/kiteq/sub/trade/g1-bind", {
      data: bindingsToJson([directBinding("g1", "trade", "pay", 100, true)]),
    });
    // A topic this node does not serve is mirrored at start too (the table is shared).
    await zkCreate(raw, "/kiteq/sub/other/g9-bind", {
      data: bindingsToJson([fanoutBinding("g9", "other", 10, true)]),
    });
    // A stale "zk" row from an earlier run is replaced by what ZooKeeper holds.
    await db.pool.query(
      `INSERT INTO bindings (group_id, topic, message_type, bind_type, version, watermark, persistent, source, updated_at)
       VALUES ('gone', 'trade', 'x', 0, '1.0.0', 1, true, 'zk', now())`,
    );
    await cluster(await freePort());
    expect(await zkRows()).toEqual(["g1/trade/pay", "g9/other/*"]);

    await zkSetData(
      raw,
      "/kiteq/sub/trade/g1-bind",
      bindingsToJson([
        directBinding("g1", "trade", "pay", 100, true),
        directBinding("g1", "trade", "refund", 100, true),
      ]),
    );
    // Bounds of 15 s here: ZooKeeper, PostgreSQL and this process short of CPU (CI) answer late.
    await waitFor(
      async () => (await zkRows()).includes("g1/trade/refund"),
      15_000,
      "changed bindings mirrored",
    );
    await zkCreate(raw, "/kiteq/sub/order/g2-bind", {
      data: bindingsToJson([fanoutBinding("g2", "order", 10, false)]),
      ephemeral: true,
    });
    await waitFor(async () => (await zkRows()).includes("g2/order/*"), 15_000, "new group mirrored");
    await zkRemove(raw, "/kiteq/sub/trade/g1-bind");
    await waitFor(
      async () => !(await zkRows()).some((r) => r.startsWith("g1/")),
      15_000,
      "deletion mirrored",
    );
    expect(await zkRows()).toEqual(["g2/order/*", "g9/other/*"]);
    // The delivery engine reads the table: bindings from other sources are untouched.
    expect((await listBindings(db.pool)).map((b) => b.groupId).sort()).toEqual(["g2", "g9"]);
    await zkRemove(raw, "/kiteq/sub/order/g2-bind");
    await zkRemove(raw, "/kiteq/sub/other/g9-bind");
  });

  it("syncGroup after the watch already reported a group's change waits for its write, and says to reload", async () => {
    const node = await cluster(await freePort());
    const lock = await db.pool.connect();
    try {
      // The mirror's write of the new binding waits for this lock.
      await lock.query("BEGIN");
      await lock.query("LOCK TABLE bindings IN EXCLUSIVE MODE");
      await zkCreate(raw, "/kiteq/sub/trade/gs-bind", {
        data: bindingsToJson([directBinding("gs", "trade", "pay", 100, true)]),
      });
      // Long enough for the watch to fire and report it (its write then queued behind the lock).
      await new Promise((r) => setTimeout(r, 1_000));
      const unlockAt = Date.now() + 1_000;
      const unlock = setTimeout(() => void lock.query("COMMIT"), 1_000);
      // Before: false at once (its own read found nothing new), so a heartbeat was answered
      // before the binding applied and a message sent next was owed to no group.
      const reload = await node.syncGroup!("gs");
      clearTimeout(unlock);
      expect(reload).toBe(true);
      expect(Date.now()).toBeGreaterThanOrEqual(unlockAt - 50);
      expect(await zkRows()).toContain("gs/trade/pay");
    } finally {
      await lock.query("COMMIT").catch(() => undefined);
      lock.release();
      // The next cluster of this file mirrors what ZooKeeper holds at its start.
      await zkRemove(raw, "/kiteq/sub/trade/gs-bind");
    }
  });

  it("refuses a Regx binding with a pattern Go refuses, alone: the group's other bindings and other groups stay", async () => {
    const bad = (pattern: string) =>
      `{"groupId":"gr","topic":"trade","messageType":${JSON.stringify(pattern)},"bindType":1,"version":"1.0.0","watermark":10,"persistent":true}`;
    const good = (type: string) =>
      `{"groupId":"gr","topic":"trade","messageType":"${type}","bindType":0,"version":"1.0.0","watermark":10,"persistent":true}`;
    await zkCreate(raw, "/kiteq/sub/trade/gr-bind", { data: `[${good("pay")},${bad("(?=lookahead)")}]` });
    await zkCreate(raw, "/kiteq/sub/trade/gk-bind", {
      data: bindingsToJson([directBinding("gk", "trade", "keep", 10, true)]),
    });
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: "warn" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    await cluster(await freePort(), zk.connectString, log);
    // At start (listBindings): the good binding of the same node stays, the bad one is named.
    expect(await zkRows()).toEqual(["gk/trade/keep", "gr/trade/pay"]);
    const refusals = () => lines.filter((l) => String(l.msg).startsWith("Regx binding refused"));
    expect(refusals()[0]).toMatchObject({ groupId: "gr", topic: "trade", pattern: "(?=lookahead)" });
    // On change (watch): a catastrophic but valid pattern is accepted, an invalid one refused alone.
    await zkSetData(raw, "/kiteq/sub/trade/gr-bind", `[${bad("(a+)+$")},${bad("a{1001}")}]`);
    await waitFor(
      async () => (await zkRows()).includes("gr/trade/(a+)+$"),
      15_000,
      "changed bindings mirrored",
    );
    expect(await zkRows()).toEqual(["gk/trade/keep", "gr/trade/(a+)+$"]);
    await waitFor(() => refusals().some((l) => l.pattern === "a{1001}"), 15_000, "refusal logged");
    await zkRemove(raw, "/kiteq/sub/trade/gr-bind");
    await zkRemove(raw, "/kiteq/sub/trade/gk-bind");
  });

  it("releases the claims and transactions of a node that leaves the live set", async () => {
    const port = await freePort();
    const c = await cluster(port);
    const other = new ZooKeeperRegistry({ connectString: zk.connectString, sessionTimeoutMs: SESSION_MS });
    await other.start("127.0.0.1:1", ["trade"], {
      bindingsChanged() {},
      serverGone() {},
      serverJoined() {},
      outage() {},
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(c.released).toEqual([]);
    await other.stop();
    await waitFor(() => c.released.length > 0 && c.releasedTx.length > 0, 15_000, "release");
    expect(c.released).toEqual(["127.0.0.1:1"]);
    expect(c.releasedTx).toEqual(["127.0.0.1:1"]);
    expect(await zkExists(raw, `/kiteq/server/trade/127.0.0.1:${port}`)).toBeDefined();
    expect(await zkExists(raw, `/kiteq/server/order/127.0.0.1:${port}`)).toBeDefined();
  });

  it("writes nothing under /kiteq/pub: that path belongs to the producers, as in KiteQ", async () => {
    const c = await cluster(await freePort());
    // A producer registered by its own client (kiteq-client-go's PublishTopics) is left alone.
    await zkCreate(raw, "/kiteq/pub/trade/pg-own/10.1.2.9:7000", { ephemeral: true });
    await new Promise((r) => setTimeout(r, 300));
    expect(await zkGetChildren(raw, "/kiteq/pub/trade")).toEqual(["pg-own"]);
    expect(await zkGetChildren(raw, "/kiteq/pub/trade/pg-own")).toEqual(["10.1.2.9:7000"]);
    expect(await zkExists(raw, "/kiteq/pub/order")).toBeUndefined();
    await c.stop();
    expect(await zkGetChildren(raw, "/kiteq/pub/trade/pg-own")).toEqual(["10.1.2.9:7000"]);
    await zkRemove(raw, "/kiteq/pub/trade/pg-own/10.1.2.9:7000");
  });

  it("goes on claiming while ZooKeeper is down (liveness is the PostgreSQL lock), logs the outage once, and registers again", async () => {
    const port = await freePort();
    const lines: string[] = [];
    const log = pino({ level: "info" }, { write: (l: string) => void lines.push(l) });
    await cluster(port, zk.connectString, log);
    const said = (text: string) => lines.filter((l) => l.includes(text)).length;
    zk.kill();
    await waitFor(() => said("ZooKeeper session lost") === 1, 10_000, "outage logged");
    await new Promise((r) => setTimeout(r, 1_000));
    expect(said("ZooKeeper session lost")).toBe(1); // logged once
    await zk.restart();
    await waitFor(() => said("registered in ZooKeeper again") === 1, 20_000, "registered again");
    // The shared client may have lost its session with the server: check with a new one.
    const check = await connectZooKeeper(zk.connectString, {
      sessionTimeoutMs: SESSION_MS,
      connectTimeoutMs: 3_000,
      retries: 3,
    });
    try {
      expect(await zkExists(check, `/kiteq/alive_servers/127.0.0.1:${port}`)).toBeDefined();
    } finally {
      await closeZooKeeper(check);
    }
  });

  it("fails with RegistryFailed after a bounded wait when ZooKeeper does not answer", async () => {
    const dead = await freePort();
    const t0 = Date.now();
    const err = await cluster(await freePort(), `127.0.0.1:${dead}`).then(
      () => undefined,
      (e: unknown) => e,
    );
    const waited = Date.now() - t0;
    console.log(`unreachable ZooKeeper: start failed after ${waited} ms`);
    expect(err).toBeInstanceOf(KiteqError);
    expect((err as KiteqError).code).toBe(ErrorCode.RegistryFailed);
    expect((err as KiteqError).message).toMatch(/unreachable/);
    expect((err as KiteqError).message).not.toContain("\n");
    expect(waited).toBeLessThan(25_000);
  });

  it("its log lines carry the broker's node key once, the registered address as address", async () => {
    const port = await freePort();
    const lines: string[] = [];
    // As the broker's logger: a child with its node id.
    const log = pino({ level: "info" }, { write: (l: string) => void lines.push(l) }).child({
      node: "node-a",
    });
    await cluster(port, zk.connectString, log);
    const registered = lines.find((l) => l.includes('"msg":"registered in ZooKeeper"'));
    expect(registered).toBeDefined();
    // Before: {"node":"node-a",...,"node":"127.0.0.1:<port>",...}.
    for (const line of lines) {
      expect(line.match(/"node":/g) ?? [], line).toHaveLength(1);
      expect((line.match(/"address":/g) ?? []).length, line).toBeLessThanOrEqual(1);
    }
    expect(JSON.parse(registered ?? "{}")).toMatchObject({ node: "node-a", address: `127.0.0.1:${port}` });
  });

  it("registers a wildcard listener under its node id, and refuses a node id that is not host:port", () => {
    expect(advertisedAddress("10.0.0.1:13800", "x")).toBe("10.0.0.1:13800");
    expect(advertisedAddress("0.0.0.0:13800", "kiteq1:13800")).toBe("kiteq1:13800");
    expect(advertisedAddress(":::13800", "kiteq1:13800")).toBe("kiteq1:13800");
    expect(advertisedAddress("::1:13800", "x")).toBe("[::1]:13800");
    expect(() => advertisedAddress("0.0.0.0:13800", "node-a")).toThrow(/node id/);
  });

  // Last in this file: the wiped server refuses the file's shared client from then on.
  it("gives a ZooKeeper restarted without its data the store's persistent subscriptions back: no group reads as unbound meanwhile", async () => {
    const storeId = "6f1d6c1e-0000-4000-8000-000000000001";
    await zkCreate(raw, "/kiteq/sub/trade/keep-bind", {
      data: bindingsToJson([directBinding("keep", "trade", "pay", 100, true)]),
    });
    await zkCreate(raw, "/kiteq/sub/order/online-bind", {
      data: bindingsToJson([fanoutBinding("online", "order", 10, false)]),
      ephemeral: true,
    });
    const lines: string[] = [];
    const log = pino({ level: "info" }, { write: (l: string) => void lines.push(l) });
    await cluster(await freePort(), zk.connectString, log, storeId);
    expect(await zkRows()).toEqual(["keep/trade/pay", "online/order/*"]);
    // Watch the table the delivery engine reads, every 50 ms, while ZooKeeper loses everything.
    let sawKeepMissing = false;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        if (!(await zkRows()).includes("keep/trade/pay")) sawKeepMissing = true;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await zk.restart({ wipeData: true });
    const check = await connectZooKeeper(zk.connectString, {
      sessionTimeoutMs: SESSION_MS,
      connectTimeoutMs: 3_000,
      retries: 3,
    });
    try {
      // The node opens a new session (the old one is refused for ever) and writes the persistent
      // subscription back; the ephemeral one went with its consumer's session.
      const restored = await waitFor(
        async () => (await zkGetData(check, "/kiteq/sub/trade/keep-bind"))?.data.toString("utf8"),
        20_000,
        "persistent subscription written back",
      );
      expect(JSON.parse(restored)).toEqual(
        JSON.parse(bindingsToJson([directBinding("keep", "trade", "pay", 100, true)])),
      );
      expect(await zkExists(check, "/kiteq/sub/order/online-bind")).toBeUndefined();
      // Recorded once every subscription was written back (a restore cut short is done again).
      await waitFor(
        async () => (await zkExists(check, `/kiteq-pg/stores/${storeId}`)) !== undefined,
        15_000,
        "store recorded",
      );
      await waitFor(
        async () => !(await zkRows()).includes("online/order/*"),
        15_000,
        "ephemeral one unbound",
      );
      watching = false;
      await watcher;
      expect(sawKeepMissing).toBe(false);
      expect(await zkRows()).toEqual(["keep/trade/pay"]);
      expect(
        lines.some((l) => l.includes("its persistent subscriptions were written back from the store")),
      ).toBe(true);
      await zkRemove(check, "/kiteq/sub/trade/keep-bind");
    } finally {
      watching = false;
      await closeZooKeeper(check);
    }
  });
});
