/**
 * How a send ends when sendTimeoutMs runs out. No attempt goes out with less than 100 ms left, also
 * the first one after a wait for a connection (a walkthrough: 13 sends sent with a few ms left,
 * stored and delivered, reported "KQ_TIMEOUT: not stored within 5000 ms ... no store ack within
 * 6 ms"); a send whose store ack did not come says its outcome is unknown; one every broker
 * refused before storing ("broker shutting down") says so, not "not stored within".
 */
import { afterEach, describe, expect, it } from "vitest";
import { createProducer, ErrorCode, KiteqError } from "../../../src/client/index.js";

import { startFakeBroker } from "../../support/fake-broker.js";

describe("client: a send out of time", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  const producerOn = async (port: number, sendTimeoutMs: number) => {
    const producer = await createProducer({
      registry: `127.0.0.1:${port}`,
      groupId: "g",
      topics: ["t"],
      sendTimeoutMs,
    });
    cleanups.push(() => producer.close());
    return producer;
  };

  it("a connection ready with 50 ms left: nothing is sent, KQ_NO_BROKER", async () => {
    let authAt: number | undefined;
    const broker = await startFakeBroker({
      authAt: () => authAt,
      storeAck: () => ({ afterMs: 150, status: true, feedback: "stored" }),
    });
    cleanups.push(broker.close);
    const producer = await producerOn(broker.port, 1_500);
    broker.kill();
    await new Promise((r) => setTimeout(r, 20));
    const started = Date.now();
    // The reconnect's handshake is answered 50 ms before the send's deadline.
    authAt = started + 1_450;
    const err = await producer.send({ topic: "t", messageType: "m", body: "x" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KiteqError);
    // Before: one attempt with ~50 ms left, stored by the broker, reported KQ_TIMEOUT.
    expect(broker.publishes()).toBe(0);
    expect((err as KiteqError).code).toBe(ErrorCode.NoBroker);
    expect((err as KiteqError).message).toMatch(/not sent/);
  });

  it("no store ack in time: KQ_TIMEOUT saying the outcome is unknown and how to resend", async () => {
    const broker = await startFakeBroker({ storeAck: () => undefined });
    cleanups.push(broker.close);
    const producer = await producerOn(broker.port, 1_000);
    const err = (await producer
      .send({ topic: "t", messageType: "m", body: "x" })
      .catch((e: unknown) => e)) as KiteqError;
    expect(err.code).toBe(ErrorCode.Timeout);
    expect(err.message).toMatch(/outcome unknown/);
    expect(err.message).toMatch(/may have been stored: resend with the same messageId/);
    expect(err.message).toContain(err.context.messageId);
    expect(err.message).not.toMatch(/not stored within/);
  });

  it("every attempt refused with 'broker shutting down': not stored, the last refusal said", async () => {
    const broker = await startFakeBroker({
      storeAck: () => ({ afterMs: 0, status: false, feedback: "broker shutting down" }),
    });
    cleanups.push(broker.close);
    const producer = await producerOn(broker.port, 1_000);
    const err = (await producer
      .send({ topic: "t", messageType: "m", body: "x" })
      .catch((e: unknown) => e)) as KiteqError;
    expect(broker.publishes()).toBeGreaterThanOrEqual(2);
    // Before: KQ_TIMEOUT "not stored within 1000 ms after N attempt(s): Error: refused: ...".
    expect(err.code).toBe(ErrorCode.NoBroker);
    expect(err.message).toMatch(/^not stored: .* refused, the last refused: broker shutting down$/);
  });
});
