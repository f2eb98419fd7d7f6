/**
 * The SDK's ZooKeeper directory against a real ZooKeeper that restarts without its data: such a
 * server refuses the old session's client for ever (it has seen a later zxid) and the library never
 * reports the session expired, so the directory must open a new session by itself and write the
 * consumer's bindings again; otherwise the brokers mirror the group as unbound and what is
 * published meanwhile is owed to nobody.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { bindingsToJson, directBinding, fanoutBinding } from "../../../src/binding/binding.js";
import { type BrokerDirectory, createDirectory } from "../../../src/client/directory.js";
import { createConsumer, ErrorCode, type KiteqError } from "../../../src/client/index.js";
import { silentLogger } from "../../../src/log.js";
import { closeZooKeeper, connectZooKeeper } from "../../../src/registry/zk-connect.js";
import { zkGetData } from "../../../src/registry/zk-ops.js";
import { startZooKeeper, type TestZooKeeper, waitFor } from "../../support/zookeeper.js";

let zk: TestZooKeeper;
let directory: BrokerDirectory | undefined;

beforeAll(async () => {
  zk = await startZooKeeper();
});

afterAll(async () => {
  await directory?.close();
  await zk?.stop();
});

it("writes a consumer's bindings again after ZooKeeper restarted without its data", async () => {
  // The default session timeout (30 s): the refused session is seen by the probes, not the timeout.
  directory = createDirectory(`zk://${zk.connectString}?timeout=30s`, silentLogger);
  await directory.start(["trade"], () => undefined);
  const kept = [directBinding("keep", "trade", "pay", 100, true)];
  const online = [fanoutBinding("online", "trade", 10, false)];
  await directory.publishBindings("keep", kept);
  await directory.publishBindings("online", online);

  await zk.restart({ wipeData: true });
  const check = await connectZooKeeper(zk.connectString, {
    sessionTimeoutMs: 4_000,
    connectTimeoutMs: 3_000,
    retries: 3,
  });
  try {
    const read = async (path: string) => (await zkGetData(check, path))?.data.toString("utf8");
    // A new session after two probes 2 s apart and a reconnect (before: the 30 s session timeout);
    // 20 s for a loaded machine.
    const keep = await waitFor(
      () => read("/kiteq/sub/trade/keep-bind"),
      20_000,
      "persistent bindings written again",
    );
    const on = await waitFor(
      () => read("/kiteq/sub/trade/online-bind"),
      20_000,
      "ephemeral bindings written again",
    );
    expect(JSON.parse(keep)).toEqual(JSON.parse(bindingsToJson(kept)));
    expect(JSON.parse(on)).toEqual(JSON.parse(bindingsToJson(online)));
  } finally {
    await closeZooKeeper(check);
  }
});

it("a consumer that never connects (no broker serves its topic) leaves no binding behind", async () => {
  const err = await createConsumer({
    registry: `zk://${zk.connectString}?timeout=4s`,
    groupId: "never-started",
    bindings: [{ topic: "nosuch", messageType: "t1" }],
    connectTimeoutMs: 1_000,
    handler: () => true,
  }).catch((e: unknown) => e);
  expect((err as KiteqError).code).toBe(ErrorCode.NoBroker);
  // Before: "the registry names no broker for these topics", naming neither topic nor path.
  expect((err as KiteqError).message).toBe(
    `no broker connected within 1000 ms: the registry names no broker for topic "nosuch" ` +
      `(no broker registered under /kiteq/server/nosuch in ZooKeeper zk://${zk.connectString}?timeout=4s)`,
  );
  const check = await connectZooKeeper(zk.connectString, {
    sessionTimeoutMs: 4_000,
    connectTimeoutMs: 3_000,
    retries: 3,
  });
  try {
    // Before: the persistent bind node stayed, owing the group whatever the topic would carry.
    expect(await zkGetData(check, "/kiteq/sub/nosuch/never-started-bind")).toBeUndefined();
  } finally {
    await closeZooKeeper(check);
  }
});
