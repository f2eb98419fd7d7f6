/**
 * A producer whose publishes the store refuses (a shard down: "not stored: ...", or a write that
 * failed: "store failed: ..."): it retries
 * with a doubling backoff, not every few hundred ms for its whole send timeout (a walkthrough
 * saw 31-39 attempts per send and 24 refused publishes per message offered), it settles by
 * sendTimeoutMs, and a failure caused by the message itself (SQLSTATE 22xxx) is refused at once.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createProducer, ErrorCode, KiteqError } from "../../../src/client/index.js";
import { startFakeBroker } from "../../support/fake-broker.js";

/** A fake broker that answers every publish false with `feedback`, and counts them. */
const refusingBroker = (feedback: string) =>
  startFakeBroker({ storeAck: () => ({ afterMs: 0, status: false, feedback }) });

describe("client: publishes the store refuses", () => {
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

  it("a write that failed (outcome unknown): a few attempts with a doubling backoff, settled by sendTimeoutMs as KQ_TIMEOUT", async () => {
    const broker = await refusingBroker("store failed: shard 1 (127.0.0.1:5432/kq) is down");
    cleanups.push(broker.close);
    const producer = await producerOn(broker.port, 4_000);
    const started = Date.now();
    const err = await producer.send({ topic: "t", messageType: "m", body: "x" }).catch((e: unknown) => e);
    const took = Date.now() - started;
    expect(err).toBeInstanceOf(KiteqError);
    expect((err as KiteqError).code).toBe(ErrorCode.Timeout);
    // Before: 50 ms steps up to 500 ms, about 14 attempts in 4 s. Now 100, 200, 400, 800 ms,
    // 1.6 s... (each 0.5-1.5x): at most 8.
    expect(broker.publishes()).toBeGreaterThanOrEqual(3);
    expect(broker.publishes()).toBeLessThanOrEqual(8);
    // Before: the backoff after the last attempt could end up to 750 ms past the timeout.
    expect(took).toBeLessThan(4_000 + 150);
  });

  // A shard known down is refused before anything is written: the outcome is known. It was
  // KQ_TIMEOUT "outcome unknown ... it may have been stored" (a walkthrough of a sharded store).
  it("a shard down (nothing written): the same backoff, then KQ_STORE_FAILED saying it is not stored", async () => {
    const broker = await refusingBroker(
      "not stored: shard 1 (127.0.0.1:5432/kq) is down: connect ECONNREFUSED; retry later",
    );
    cleanups.push(broker.close);
    const producer = await producerOn(broker.port, 3_000);
    const started = Date.now();
    const err = await producer.send({ topic: "t", messageType: "m", body: "x" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KiteqError);
    expect((err as KiteqError).code).toBe(ErrorCode.StoreFailed);
    expect((err as KiteqError).message).toMatch(
      /^not stored: the store refused it within sendTimeoutMs \(3000 ms\), \d+ attempt\(s\), the last refused: not stored: shard 1 \(127\.0\.0\.1:5432\/kq\) is down/,
    );
    expect((err as KiteqError).message).not.toMatch(/may have been stored/);
    expect(broker.publishes()).toBeGreaterThanOrEqual(3);
    expect(broker.publishes()).toBeLessThanOrEqual(7);
    expect(Date.now() - started).toBeLessThan(3_000 + 150);
  });

  it("a failure caused by the message itself (SQLSTATE 22xxx) is refused at once", async () => {
    const broker = await refusingBroker(
      'store failed: invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021)',
    );
    cleanups.push(broker.close);
    const producer = await producerOn(broker.port, 4_000);
    const started = Date.now();
    const err = await producer.send({ topic: "t", messageType: "m", body: "x" }).catch((e: unknown) => e);
    expect((err as KiteqError).code).toBe(ErrorCode.SendRefused);
    expect(broker.publishes()).toBe(1);
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
