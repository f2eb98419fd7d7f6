/**
 * ZooKeeperRegistry against a real ZooKeeper: KiteQ's paths, binding watches, liveness of other
 * brokers (clean stop and kill -9), ZooKeeper restarts (same session, and wiped data so the
 * session expires), and a bounded failure when nothing answers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Client } from "node-zookeeper-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Binding, bindingsToJson, directBinding, fanoutBinding } from "../../../src/binding/binding.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";
import type { RegistryEvents } from "../../../src/registry/registry.js";
import { closeZooKeeper, connectZooKeeper } from "../../../src/registry/zk-connect.js";
import { zkCreate, zkExists, zkGetChildren, zkRemove, zkSetData } from "../../../src/registry/zk-ops.js";
import { parseZkUrl, ZooKeeperRegistry } from "../../../src/registry/zookeeper.js";
import { freePort, startZooKeeper, type TestZooKeeper, waitFor } from "../../support/zookeeper.js";

const SESSION_MS = 4_000;
const here = path.dirname(fileURLToPath(import.meta.url));

type Event =
  | { kind: "bindings"; topic: string; groupId: string; bindings: Binding[] }
  | { kind: "joined" | "gone"; address: string }
  | { kind: "outage"; down: boolean };

function recorder(): { log: Event[]; events: RegistryEvents } {
  const log: Event[] = [];
  return {
    log,
    events: {
      bindingsChanged: (topic, groupId, bindings) => log.push({ kind: "bindings", topic, groupId, bindings }),
      serverJoined: (address) => log.push({ kind: "joined", address }),
      serverGone: (address) => log.push({ kind: "gone", address }),
      outage: (down) => log.push({ kind: "outage", down }),
    },
  };
}

let zk: TestZooKeeper;
let raw: Client;
const registries: ZooKeeperRegistry[] = [];
const children: ChildProcess[] = [];

function registry(sessionTimeoutMs = SESSION_MS): ZooKeeperRegistry {
  const r = new ZooKeeperRegistry({
    connectString: `zk://${zk.connectString}`,
    sessionTimeoutMs,
  });
  registries.push(r);
  return r;
}

async function rawClient(): Promise<Client> {
  return connectZooKeeper(zk.connectString, {
    sessionTimeoutMs: SESSION_MS,
    connectTimeoutMs: 3_000,
    retries: 3,
  });
}

const isOwnedEphemeral = async (client: Client, p: string) => {
  const stat = await zkExists(client, p);
  return stat !== undefined && !stat.ephemeralOwner.equals(Buffer.alloc(8));
};

beforeAll(async () => {
  zk = await startZooKeeper();
  raw = await rawClient();
});

afterEach(async () => {
  await Promise.all(registries.splice(0).map((r) => r.stop()));
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

afterAll(async () => {
  if (raw) await closeZooKeeper(raw);
  await zk?.stop();
});

describe("parseZkUrl", () => {
  it("accepts zk:// and bare lists, defaults the port, keeps a chroot", () => {
    expect(parseZkUrl("zk://a:1,b:2").connectString).toBe("a:1,b:2");
    expect(parseZkUrl("10.0.0.1:2181,10.0.0.2").servers).toEqual(["10.0.0.1:2181", "10.0.0.2:2181"]);
    expect(parseZkUrl("zk://h:2181/kq/").chroot).toBe("/kq");
    expect(() => parseZkUrl("zk://")).toThrow(KiteqError);
    expect(() => parseZkUrl("h:99999")).toThrow(/out of range/);
  });
});

describe("ZooKeeperRegistry", () => {
  it("registers KiteQ's paths and publisher nodes", async () => {
    const r = registry();
    await r.start("127.0.0.1:13801", ["trade", "order"], recorder().events);
    expect(r.isRegistered()).toBe(true);
    for (const topic of ["trade", "order"]) {
      expect(await isOwnedEphemeral(raw, `/kiteq/server/${topic}/127.0.0.1:13801`)).toBe(true);
      expect(await zkExists(raw, `/kiteq/sub/${topic}`)).toBeDefined();
    }
    expect(await isOwnedEphemeral(raw, "/kiteq/alive_servers/127.0.0.1:13801")).toBe(true);
    const all = await zkExists(raw, "/kiteq/all_servers/127.0.0.1:13801");
    expect(all?.ephemeralOwner.equals(Buffer.alloc(8))).toBe(true); // persistent
    expect(await r.liveServers()).toContain("127.0.0.1:13801");

    // /kiteq/pub belongs to the producers (kiteq-client-go's PublishTopics): the broker writes nothing there.
    expect(await zkExists(raw, "/kiteq/pub")).toBeUndefined();

    await r.stop();
    expect(r.isRegistered()).toBe(false);
    expect(await zkExists(raw, "/kiteq/alive_servers/127.0.0.1:13801")).toBeUndefined();
    expect(await zkExists(raw, "/kiteq/server/trade/127.0.0.1:13801")).toBeUndefined();
    expect(await zkExists(raw, "/kiteq/all_servers/127.0.0.1:13801")).toBeDefined();
  });

  it("reports bindings written, changed and deleted under /kiteq/sub", async () => {
    const { log, events } = recorder();
    const r = registry();
    await r.start("127.0.0.1:13802", ["trade"], events);
    const bindingsOf = (groupId: string) =>
      log
        .filter((e) => e.kind === "bindings" && e.groupId === groupId)
        .map((e) => (e as { bindings: Binding[] }).bindings);

    const v1 = [directBinding("g1", "trade", "pay-succ", 1000, true)];
    await zkCreate(raw, "/kiteq/sub/trade/g1-bind", { data: bindingsToJson(v1) });
    await waitFor(() => bindingsOf("g1").length === 1, 5_000, "first bindings");
    expect(bindingsOf("g1")[0]).toEqual(v1);
    expect(await r.listBindings()).toContainEqual(v1[0]);

    const v2 = [...v1, fanoutBinding("g1", "trade", 500, false)];
    await zkSetData(raw, "/kiteq/sub/trade/g1-bind", bindingsToJson(v2));
    await waitFor(() => bindingsOf("g1").length === 2, 5_000, "changed bindings");
    expect(bindingsOf("g1")[1]).toEqual(v2);

    // Malformed data is ignored (logged), the watch stays armed.
    await zkSetData(raw, "/kiteq/sub/trade/g1-bind", "{not json");
    // Bindings of a topic this node does not serve are not reported.
    await zkCreate(raw, "/kiteq/sub/other/g9-bind", {
      data: bindingsToJson([fanoutBinding("g9", "other", 1, true)]),
    });

    await zkRemove(raw, "/kiteq/sub/trade/g1-bind");
    await waitFor(() => bindingsOf("g1").length === 3, 5_000, "deletion");
    expect(bindingsOf("g1")[2]).toEqual([]);
    expect(log.some((e) => e.kind === "bindings" && e.topic === "other")).toBe(false);
  });

  it("sees another broker join and leave (clean stop)", async () => {
    const { log, events } = recorder();
    const b = registry();
    await b.start("127.0.0.1:13812", ["trade"], events);
    const a = registry();
    await a.start("127.0.0.1:13811", ["trade"], recorder().events);
    await waitFor(
      () => log.some((e) => e.kind === "joined" && e.address === "127.0.0.1:13811"),
      5_000,
      "join",
    );
    expect(await b.liveServers()).toEqual(["127.0.0.1:13811", "127.0.0.1:13812"]);
    const stopped = Date.now();
    await a.stop();
    await waitFor(() => log.some((e) => e.kind === "gone" && e.address === "127.0.0.1:13811"), 5_000, "gone");
    console.log(`serverGone after clean stop: ${Date.now() - stopped} ms`);
    expect(log.some((e) => e.kind === "joined" && e.address === "127.0.0.1:13812")).toBe(false); // not itself
  });

  it("sees a kill -9'd broker gone within the session timeout + 2 s", async () => {
    const { log, events } = recorder();
    const b = registry();
    await b.start("127.0.0.1:13822", ["trade"], events);
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        path.join(here, "zk-holder.ts"),
        zk.connectString,
        "127.0.0.1:13821",
        String(SESSION_MS),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    children.push(child);
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    await waitFor(() => out.includes("registered"), 30_000, "child registration");
    await waitFor(
      () => log.some((e) => e.kind === "joined" && e.address === "127.0.0.1:13821"),
      5_000,
      "join",
    );
    const killed = Date.now();
    child.kill("SIGKILL");
    await waitFor(
      () => log.some((e) => e.kind === "gone" && e.address === "127.0.0.1:13821"),
      SESSION_MS + 2_000,
      "serverGone after kill -9",
    );
    console.log(`serverGone after kill -9: ${Date.now() - killed} ms (session timeout ${SESSION_MS} ms)`);
    expect(await zkExists(raw, "/kiteq/server/trade/127.0.0.1:13821")).toBeUndefined();
  });

  it("survives a ZooKeeper restart: outage(true), then re-registered and outage(false)", async () => {
    const { log, events } = recorder();
    const r = registry();
    await r.start("127.0.0.1:13831", ["trade"], events);
    const outages = () => log.filter((e) => e.kind === "outage").map((e) => (e as { down: boolean }).down);
    const owner = async (client: Client) =>
      (await zkExists(client, "/kiteq/alive_servers/127.0.0.1:13831"))?.ephemeralOwner.toString("hex");
    const session = await owner(raw);

    const t0 = Date.now();
    await zk.restart();
    await waitFor(() => outages().length >= 2, 20_000, "outage end");
    console.log(`restart (same session): outage over ${Date.now() - t0} ms after the restart began`);
    expect(outages()).toEqual([true, false]);
    expect(r.isRegistered()).toBe(true);

    const check = await rawClient();
    try {
      expect(await isOwnedEphemeral(check, "/kiteq/alive_servers/127.0.0.1:13831")).toBe(true);
      // The same session: the probes for a refused session (every 2 s while cut off) did not
      // take a server that came back with its data for one that lost it.
      await new Promise((r) => setTimeout(r, 4_500));
      expect(await owner(check)).toBe(session);
      expect(outages()).toEqual([true, false]);
      // Watches still armed after the reconnect.
      await zkCreate(check, "/kiteq/sub/trade/g2-bind", {
        data: bindingsToJson([directBinding("g2", "trade", "x", 10, true)]),
      });
      await waitFor(
        () => log.some((e) => e.kind === "bindings" && e.groupId === "g2"),
        5_000,
        "binding after restart",
      );
    } finally {
      await closeZooKeeper(check);
    }
  });

  it("re-registers everything in a new session when ZooKeeper lost its data", async () => {
    const { log, events } = recorder();
    const other = registry();
    await other.start("127.0.0.1:13842", ["trade"], recorder().events);
    // A broker's default session timeout (30 s): the library never reports the refused session
    // expired, and the node was unfindable until that timeout ran out (30-32 s); now the probes
    // see the servers serving new sessions within a few seconds.
    const r = registry(30_000);
    await r.start("127.0.0.1:13841", ["trade"], events);
    const outages = () => log.filter((e) => e.kind === "outage").map((e) => (e as { down: boolean }).down);

    const t0 = Date.now();
    await zk.restart({ wipeData: true });
    await waitFor(() => outages().length >= 2, 15_000, "outage end");
    console.log(
      `restart (wiped, session expired): re-registered ${Date.now() - t0} ms after the restart began`,
    );
    expect(outages()).toEqual([true, false]);
    expect(r.isRegistered()).toBe(true);

    const check = await rawClient();
    try {
      expect(await isOwnedEphemeral(check, "/kiteq/alive_servers/127.0.0.1:13841")).toBe(true);
      expect(await isOwnedEphemeral(check, "/kiteq/server/trade/127.0.0.1:13841")).toBe(true);
      expect(await zkExists(check, "/kiteq/all_servers/127.0.0.1:13841")).toBeDefined();
      expect(await zkExists(check, "/kiteq/pub")).toBeUndefined(); // never the broker's to re-create
      // The other broker (a 4 s session) re-registers on its own schedule: it may come back a
      // moment after this one (which no longer waits for its 30 s timeout).
      const alive = async () => (await zkGetChildren(check, "/kiteq/alive_servers"))?.sort().join(",");
      await waitFor(async () => (await alive()) === "127.0.0.1:13841,127.0.0.1:13842", 15_000, "both alive");
      await zkCreate(check, "/kiteq/sub/trade/g3-bind", {
        data: bindingsToJson([fanoutBinding("g3", "trade", 10, true)]),
      });
      await waitFor(
        () => log.some((e) => e.kind === "bindings" && e.groupId === "g3"),
        5_000,
        "binding in new session",
      );
    } finally {
      await closeZooKeeper(check);
    }
    // The old raw client's session is gone too; replace it for the remaining tests.
    await closeZooKeeper(raw);
    raw = await rawClient();
  });

  it("fails start() with RegistryFailed within the bounded wait when nothing listens", async () => {
    const port = await freePort();
    const r = new ZooKeeperRegistry({
      connectString: `127.0.0.1:${port}`,
      connectTimeoutMs: 1_000,
      startRetries: 1,
    });
    registries.push(r);
    const t0 = Date.now();
    const err = await r.start("127.0.0.1:13851", ["trade"], recorder().events).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KiteqError);
    expect((err as KiteqError).code).toBe(ErrorCode.RegistryFailed);
    expect((err as KiteqError).message).toMatch(/unreachable after/);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it("fails with RegistryFailed when a server accepts TCP but never answers the handshake", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const t0 = Date.now();
      const err = await connectZooKeeper(`127.0.0.1:${port}`, {
        sessionTimeoutMs: SESSION_MS,
        connectTimeoutMs: 1_500,
        retries: 1,
      }).catch((e: unknown) => e);
      expect((err as KiteqError).code).toBe(ErrorCode.RegistryFailed);
      expect(Date.now() - t0).toBeLessThan(6_000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
