/**
 * What a plain JavaScript caller (no types to stop it) can pass to a producer: each mistake is a
 * KiteqError with a stable code naming the argument, before anything reaches a broker. Before:
 * `properties: "abc"` was sent as properties 0=a, 1=b, 2=c, a Map as no properties; `fly: "yes"` as a stored message;
 * `send(null)` was a bare TypeError; `sendTx(m)` without a function stored the message, then
 * rolled it back with a TypeError; `onTxCheck("x")` was taken, and every check-back failed in
 * silence (answered unknown until the broker's give-up rolled the message back).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createProducer, type Producer } from "../../../src/client/index.js";
import { ErrorCode } from "../../../src/errors.js";
import { type FakeBroker, startFakeBroker } from "../../support/fake-broker.js";

let broker: FakeBroker;
let producer: Producer;

beforeAll(async () => {
  broker = await startFakeBroker({ storeAck: () => ({ afterMs: 0, status: true, feedback: "" }) });
  producer = await createProducer({ registry: broker.address, groupId: "g", topics: ["t"] });
});

afterAll(async () => {
  await producer?.close();
  broker?.close();
});

/** `send` or `sendTx` as an untyped caller calls it. */
type Untyped = (...args: unknown[]) => Promise<unknown>;

describe("a plain JavaScript caller's mistakes are refused before sending, naming the argument", () => {
  it.each([
    [{ properties: "abc" }, "properties", /properties must be an object of string values, not "abc"/],
    [{ properties: ["a"] }, "properties", /properties must be an object of string values, not an array/],
    [{ properties: null }, "properties", /not null/],
    // Before: no own entries, sent as no properties at all.
    [{ properties: new Map([["k", "v"]]) }, "properties", /not a Map \(use Object.fromEntries\(map\)\)/],
    [{ fly: "yes" }, "fly", /fly must be true or false, not "yes"/],
    [{ deliverAt: "tomorrow" }, "deliverAt", /deliverAt must be a Date or unix milliseconds, not "tomorrow"/],
  ])("send(%j)", async (fields, key, text) => {
    const err = await (producer.send as Untyped)({
      topic: "t",
      messageType: "m",
      body: "b",
      ...fields,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.MessageInvalid, context: { key } });
    expect(String((err as Error).message)).toMatch(text);
  });

  it("send(null) and send([])", async () => {
    for (const m of [null, [], "text"]) {
      const err = await (producer.send as Untyped)(m).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCode.MessageInvalid, context: { key: "message" } });
      expect(String((err as Error).message)).toMatch(
        /a message must be an object \{ topic, messageType, body \}/,
      );
    }
  });

  it("sendTx without a local transaction function stores nothing", async () => {
    const before = broker.publishes();
    for (const f of [undefined, "commit"]) {
      const err = await (producer.sendTx as Untyped)({ topic: "t", messageType: "m", body: "b" }, f).catch(
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: ErrorCode.ConfigInvalid, context: { key: "localTransaction" } });
      expect(String((err as Error).message)).toMatch(/sendTx: localTransaction must be a function, not/);
    }
    expect(broker.publishes()).toBe(before);
  });

  it("onTxCheck with something other than a function throws at once", () => {
    expect(() => (producer.onTxCheck as (h: unknown) => void)("commit")).toThrow(
      expect.objectContaining({
        code: ErrorCode.ConfigInvalid,
        message: "onTxCheck: handler must be a function, not string",
      }),
    );
  });

  it("well-formed messages still go out", async () => {
    await expect(
      producer.send({ topic: "t", messageType: "m", body: "b", properties: { k: "v" }, fly: false }),
    ).resolves.toMatchObject({ messageId: expect.stringMatching(/^[0-9a-f]{32}$/) });
  });
});
