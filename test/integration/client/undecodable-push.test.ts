/**
 * A push the SDK cannot decode (snappy flag on a body that is not snappy) is nacked with the
 * reason, which the broker records in the history (explain, dead letters): it was a bare false,
 * with one line on the consumer's logger, silent by default; and the process hears it once.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildHeader } from "../../../src/client/connection.js";
import { createConsumer } from "../../../src/client/consumer.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { type DeliverAck, encodeBytesMessage } from "../../../src/protocol/messages.js";
import { type FakeBroker, startFakeBroker } from "../../support/fake-broker.js";

const acks: DeliverAck[] = [];
let broker: FakeBroker;
let registry: string;

beforeAll(async () => {
  // Pushes the same undecodable message twice after each handshake; records the answers.
  broker = await startFakeBroker({
    pushOnHandshake: () => {
      const header = buildHeader({ topic: "t", messageType: "m", groupId: "producer" });
      header.snappy = true;
      const body = encodeBytesMessage({ header, body: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]) });
      return [0, 1].map(() => ({ cmdType: CommandType.BYTES_MESSAGE, body }));
    },
    onDeliverAck: (ack) => acks.push(ack),
  });
  registry = broker.address;
});

afterAll(() => broker.close());

it("an undecodable push is nacked with why, and the process is told once", async () => {
  const warnings: { code?: string; message: string }[] = [];
  const onWarning = (w: Error & { code?: string }) => warnings.push({ code: w.code, message: w.message });
  process.on("warning", onWarning);
  const handled: string[] = [];
  const consumer = await createConsumer({
    registry,
    groupId: "g",
    bindings: [],
    handler: (m) => {
      handled.push(m.messageId);
      return true;
    },
  });
  try {
    const deadline = Date.now() + 5_000;
    while (acks.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(handled).toEqual([]);
    expect(acks.map((a) => a.status)).toEqual([false, false]);
    for (const a of acks) expect(a.feedback).toMatch(/^undecodable: .*snappy/i);
    await new Promise((r) => setTimeout(r, 50));
    const ours = warnings.filter((w) => w.code === "KQ_MESSAGE_UNDECODABLE");
    expect(ours).toHaveLength(1);
    expect(ours[0]!.message).toContain('consumer of group "g"');
  } finally {
    process.off("warning", onWarning);
    await consumer.close();
  }
});
