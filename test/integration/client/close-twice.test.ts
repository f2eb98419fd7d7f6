/**
 * producer.close() called twice (two shutdown hooks, a framework's and the application's): each
 * call resolves once the sends in flight have settled and the connections are closed. The second
 * call used to resolve at once, so code awaiting it went on (exited) while a send was in flight.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createProducer } from "../../../src/client/index.js";
import { type FakeBroker, startFakeBroker } from "../../support/fake-broker.js";

let broker: FakeBroker;

beforeAll(async () => {
  // Each publish is acked 400 ms after it arrives.
  broker = await startFakeBroker({ storeAck: () => ({ afterMs: 400, status: true, feedback: "" }) });
});

afterAll(() => {
  broker?.close();
});

it("a second close() resolves after the send in flight, like the first", async () => {
  const producer = await createProducer({ registry: broker.address, groupId: "g", topics: ["t"] });
  let sent = false;
  const send = producer.send({ topic: "t", messageType: "m", body: "b" }).then(() => {
    sent = true;
  });
  const first = producer.close();
  const second = producer.close();
  await second;
  expect(sent).toBe(true);
  await first;
  await send;
});
