/**
 * createProducer / createConsumer called from plain JavaScript with options missing or of the
 * wrong type: KQ_CONFIG_INVALID at once naming the option (before: a bare TypeError for a missing
 * `topics`, and a 10 s wait ending in KQ_NO_BROKER for a missing `groupId`). Nothing listens on
 * the registry's address: every case must fail before connecting.
 */
import { describe, expect, it } from "vitest";
import { createConsumer, createProducer, ErrorCode, KiteqError } from "../../../src/client/index.js";

const registry = "127.0.0.1:19001";

/** The rejection of `call`, checked to be KQ_CONFIG_INVALID within 500 ms. */
async function refused(call: () => Promise<unknown>): Promise<KiteqError> {
  const started = Date.now();
  const err = await call().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KiteqError);
  expect((err as KiteqError).code).toBe(ErrorCode.ConfigInvalid);
  expect(Date.now() - started).toBeLessThan(500);
  return err as KiteqError;
}

// Plain JavaScript callers: the options are whatever they wrote.
const producer = (options: Record<string, unknown>) =>
  createProducer({ connectTimeoutMs: 1_000, ...options } as unknown as Parameters<typeof createProducer>[0]);
const consumer = (options: Record<string, unknown>) =>
  createConsumer({ connectTimeoutMs: 1_000, ...options } as unknown as Parameters<typeof createConsumer>[0]);

describe("createProducer's options", () => {
  it.each([
    [{ registry, groupId: "g" }, "topics", "createProducer: topics is required"],
    [{ registry, topics: ["t"] }, "groupId", "createProducer: groupId is required"],
    [{ groupId: "g", topics: ["t"] }, "registry", "createProducer: registry is required"],
    [{ registry, groupId: "g", topics: "t" }, "topics", 'must be an array of topic names, got "t"'],
    [{ registry, groupId: "g", topics: [] }, "topics", "must name at least one topic"],
    [
      { registry, groupId: "g", topics: ["t", ""] },
      "topics[1]",
      'topics[1] must be a non-empty string, got ""',
    ],
    [{ registry, groupId: 7, topics: ["t"] }, "groupId", "groupId must be a non-empty string, got 7"],
    [{ registry, groupId: "g", topics: ["t"], sendTimeoutMs: "5s" }, "sendTimeoutMs", 'got "5s"'],
    [{ registry, groupId: "g", topics: ["t"], heartbeatMs: 0 }, "heartbeatMs", "from 1 to"],
    // Before: accepted, and every send rejected unsent ("no broker of topic ... reachable").
    [
      { registry, groupId: "g", topics: ["t"], sendTimeoutMs: 50 },
      "sendTimeoutMs",
      "sendTimeoutMs must be a number from 100 to 2147483647, got 50",
    ],
  ])("%j: KQ_CONFIG_INVALID naming %s", async (options, key, text) => {
    const err = await refused(() => producer(options));
    expect(err.context.key).toBe(key);
    expect(err.message).toContain(text);
  });
});

describe("createConsumer's options", () => {
  const handler = () => true;
  it.each([
    [{ registry, bindings: [{ topic: "t", messageType: "m" }], handler }, "groupId", "groupId is required"],
    [{ registry, groupId: "g", handler }, "bindings", "createConsumer: bindings is required"],
    [{ registry, groupId: "g", bindings: { topic: "t" }, handler }, "bindings", "must be an array"],
    [
      { registry, groupId: "g", bindings: [{ messageType: "m" }], handler },
      "bindings[0].topic",
      "is required",
    ],
    [{ registry, groupId: "g", bindings: [], handler: "yes" }, "handler", 'must be a function, got "yes"'],
    [{ registry, groupId: "g", bindings: [], handler, concurrency: "4" }, "concurrency", "an integer from 1"],
    [{ groupId: "g", bindings: [], handler }, "registry", "registry is required"],
    // Before: a direct binding of messageType "x", in silence.
    [
      { registry, groupId: "g", bindings: [{ topic: "t", messageType: "x", bindType: "Regx" }], handler },
      "bindings[0].bindType",
      'must be "direct", "regx" or "fanout", got "Regx"',
    ],
    // Before: a fanout binding (every messageType), the messageType dropped in silence.
    [
      { registry, groupId: "g", bindings: [{ topic: "t", messageType: "pay", bindType: "fanout" }], handler },
      "bindings[0].messageType",
      'must be omitted with bindType "fanout" (a fanout binding takes every messageType), got "pay"',
    ],
    [
      { registry, groupId: "g", bindings: [{ topic: "t", messageType: "x", persistent: "no" }], handler },
      "bindings[0].persistent",
      'must be true or false, got "no"',
    ],
  ])("%j: KQ_CONFIG_INVALID naming %s", async (options, key, text) => {
    const err = await refused(() => consumer(options));
    expect(err.context.key).toBe(key);
    expect(err.message).toContain(text);
  });

  it("options that are not an object", async () => {
    const err = await refused(() =>
      createConsumer(undefined as unknown as Parameters<typeof createConsumer>[0]),
    );
    expect(err.message).toBe("createConsumer: options must be an object, got undefined");
  });
});
