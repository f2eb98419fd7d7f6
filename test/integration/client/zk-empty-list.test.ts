/**
 * A registry that lists no broker for a topic (ZooKeeper restarted with its data wiped, before the
 * brokers register again) while the connections to them work: the pool keeps them, so producers
 * keep sending and consumers keep their pushes (before, it closed every one: KQ_NO_BROKER for
 * 15-20 s). A broker removed from a list that is not empty is still dropped, and a kept
 * connection that fails is dropped, not re-opened.
 */

import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type BrokerDirectory, createDirectory } from "../../../src/client/directory.js";
import { BrokerPool } from "../../../src/client/pool.js";
import { closeZooKeeper, connectZooKeeper } from "../../../src/registry/zk-connect.js";
import { zkCreate, zkRemove } from "../../../src/registry/zk-ops.js";
import { serverPath } from "../../../src/registry/zk-paths.js";
import { startFakeBroker } from "../../support/fake-broker.js";
import { startZooKeeper, type TestZooKeeper, waitFor } from "../../support/zookeeper.js";

let zk: TestZooKeeper;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  zk = await startZooKeeper();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await zk?.stop();
});

it("an empty broker list keeps the working connections; a removed broker of a non-empty list goes", async () => {
  const a = await startFakeBroker();
  const b = await startFakeBroker();
  cleanups.push(a.close, b.close);
  const admin = await connectZooKeeper(zk.connectString, {
    sessionTimeoutMs: 4_000,
    connectTimeoutMs: 3_000,
    retries: 3,
  });
  cleanups.push(() => closeZooKeeper(admin));
  await zkCreate(admin, serverPath("trade", a.address));
  await zkCreate(admin, serverPath("trade", b.address));

  const warnings: string[] = [];
  const logger = pino(
    { level: "warn" },
    { write: (line: string) => void warnings.push(String(JSON.parse(line).msg)) },
  );
  const pool = new BrokerPool({
    groupId: "g",
    logger,
    heartbeatMs: 1_000,
    requestTimeoutMs: 2_000,
    reconnectMinMs: 50,
    reconnectMaxMs: 200,
  });
  cleanups.push(() => pool.close());
  const directory: BrokerDirectory = createDirectory(`zk://${zk.connectString}?timeout=4s`, logger, {
    pollMs: 100,
  });
  cleanups.push(() => directory.close());
  await directory.start(["trade"], (brokers) => pool.update(brokers));
  await waitFor(() => pool.connections().length === 2, 5_000, "both brokers connected");

  // Removed from a list that still names a broker: closed as before.
  await zkRemove(admin, serverPath("trade", b.address));
  await waitFor(() => pool.describe().every((l) => l.address !== b.address), 5_000, "broker b dropped");
  expect(pool.connections()).toHaveLength(1);

  // The list turns empty (what a wiped ZooKeeper shows): a is kept and still picked for the topic.
  await zkRemove(admin, serverPath("trade", a.address));
  await new Promise((r) => setTimeout(r, 1_000));
  expect(pool.connections()).toHaveLength(1);
  expect(pool.pick("trade", new Set())?.address).toBe(a.address);
  const noBroker = warnings.filter((w) => w.includes("lists no broker"));
  expect(noBroker).toHaveLength(1);

  // Its connection fails: dropped, not re-opened (nothing lists it).
  a.kill();
  await waitFor(() => pool.describe().length === 0, 5_000, "kept broker a dropped after its loss");
  await new Promise((r) => setTimeout(r, 500));
  expect(pool.describe()).toEqual([]);
  expect(pool.pick("trade", new Set())).toBeUndefined();

  // The registry lists a broker again: connected as usual.
  await zkCreate(admin, serverPath("trade", b.address));
  await waitFor(() => pool.pick("trade", new Set())?.address === b.address, 5_000, "broker b again");
});
