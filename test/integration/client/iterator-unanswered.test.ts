/**
 * The iterator form: a loop that forgets to answer (`for await (const m of consumer) work(m)`)
 * gets `concurrency` messages and then none, for ever. With the default (silent) logger nothing
 * said why. A message taken from the iterator and left unanswered for 30 s is now a process
 * warning, KQ_MESSAGE_UNANSWERED, once per consumer.
 */
import { afterEach, expect, it, vi } from "vitest";
import { buildHeader } from "../../../src/client/connection.js";
import { createConsumer } from "../../../src/client/consumer.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodeStringMessage } from "../../../src/protocol/messages.js";
import { startFakeBroker } from "../../support/fake-broker.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A fake broker that pushes one message after each handshake and answers heartbeats. */
async function pushingBroker(): Promise<string> {
  const broker = await startFakeBroker({
    pushOnHandshake: () => [
      {
        cmdType: CommandType.STRING_MESSAGE,
        body: encodeStringMessage({
          header: buildHeader({ topic: "t", messageType: "m", groupId: "producer" }),
          body: "x",
        }),
      },
    ],
  });
  cleanups.push(() => broker.close());
  return broker.address;
}

it("a message taken from the iterator and not answered for 30 s: one KQ_MESSAGE_UNANSWERED process warning", async () => {
  const registry = await pushingBroker();
  const warnings: { code: string | undefined; message: string }[] = [];
  const onWarning = (w: Error & { code?: string }) => warnings.push({ code: w.code, message: w.message });
  process.on("warning", onWarning);
  cleanups.push(() => process.off("warning", onWarning));
  // The sweeper's interval and its clock are faked; sockets and timeouts stay real.
  vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
  const consumer = await createConsumer({ registry, groupId: "forgetful", bindings: [], concurrency: 1 });
  cleanups.push(() => consumer.close());
  const iterator = consumer[Symbol.asyncIterator]();
  const first = await iterator.next();
  expect(first.done).toBe(false);
  // Not answered: 31 s pass.
  vi.advanceTimersByTime(31_000);
  await new Promise((r) => setImmediate(r));
  vi.advanceTimersByTime(31_000);
  await new Promise((r) => setImmediate(r));
  const ours = warnings.filter((w) => w.code === "KQ_MESSAGE_UNANSWERED");
  expect(ours).toHaveLength(1);
  expect(ours[0]?.message).toMatch(
    /^consumer of group "forgetful": message [0-9a-f]{32} taken from its iterator has not been answered for 30 s; call ack\(\) or nack\(\) on each message: the iterator yields nothing more while 1 \(concurrency\) are unanswered$/,
  );
  vi.useRealTimers();
  // Answered, the consumer closes at once (not after closeTimeoutMs).
  if (!first.done) first.value.ack();
});
