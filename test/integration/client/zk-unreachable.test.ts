/**
 * An unreachable ZooKeeper at createProducer/createConsumer: they settle within connectTimeoutMs
 * with KQ_REGISTRY_FAILED naming the address and the bound. Before, the ZooKeeper connect made
 * 4 attempts of 3 s whatever connectTimeoutMs said: an application that gave 1.5 s waited ~13 s.
 */
import { expect, it } from "vitest";
import { createConsumer, createProducer } from "../../../src/client/index.js";
import { ErrorCode } from "../../../src/errors.js";
import { freePort } from "../../support/zookeeper.js";

it.each(["producer", "consumer"] as const)(
  "a %s given an unreachable ZooKeeper rejects within connectTimeoutMs",
  async (role) => {
    const port = await freePort(); // nothing listens on it
    const registry = `zk://127.0.0.1:${port}`;
    const connectTimeoutMs = 1_500;
    const started = Date.now();
    const err = await (role === "producer"
      ? createProducer({ registry, groupId: "g", topics: ["t"], connectTimeoutMs })
      : createConsumer({ registry, groupId: "g", bindings: [{ topic: "t" }], connectTimeoutMs })
    ).catch((e: unknown) => e);
    const tookMs = Date.now() - started;
    expect(err).toMatchObject({ code: ErrorCode.RegistryFailed });
    expect((err as Error).message).toBe(
      `ZooKeeper at 127.0.0.1:${port} not reachable within connectTimeoutMs (1500 ms)`,
    );
    expect(tookMs).toBeGreaterThanOrEqual(1_400);
    expect(tookMs).toBeLessThan(2_500);
  },
);
