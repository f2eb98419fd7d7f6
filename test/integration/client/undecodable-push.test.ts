/**
 * A push the SDK cannot decode (snappy flag on a body that is not snappy) is nacked with the
 * reason, which the broker records in the history (explain, dead letters): it was a bare false,
 * with one line on the consumer's logger, silent by default; and the process hears it once.
 */
import net from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildHeader } from "../../../src/client/connection.js";
import { createConsumer } from "../../../src/client/consumer.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodePacket, FrameDecoder } from "../../../src/protocol/frame.js";
import {
  type DeliverAck,
  decodeDeliverAck,
  encodeBytesMessage,
  encodeConnAuthAck,
  encodeHeartBeat,
} from "../../../src/protocol/messages.js";

const acks: DeliverAck[] = [];
let server: net.Server;
let registry: string;

beforeAll(async () => {
  // Pushes the same undecodable message twice after each handshake; records the answers.
  server = net.createServer((s) => {
    const decoder = new FrameDecoder();
    s.on("data", (chunk: Buffer) => {
      for (const p of decoder.push(chunk)) {
        if (p.cmdType === CommandType.CONN_META) {
          s.write(
            encodePacket({
              opaque: p.opaque,
              cmdType: CommandType.CONN_AUTH,
              body: encodeConnAuthAck({ status: true, feedback: "" }),
            }),
          );
          const header = buildHeader({ topic: "t", messageType: "m", groupId: "producer" });
          header.snappy = true;
          for (const opaque of [1_000, 1_001]) {
            s.write(
              encodePacket({
                opaque,
                cmdType: CommandType.BYTES_MESSAGE,
                body: encodeBytesMessage({ header, body: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]) }),
              }),
            );
          }
        } else if (p.cmdType === CommandType.HEARTBEAT) {
          s.write(
            encodePacket({
              opaque: p.opaque,
              cmdType: CommandType.HEARTBEAT,
              body: encodeHeartBeat({ version: 1 }),
            }),
          );
        } else if (p.cmdType === CommandType.DELIVER_ACK) {
          acks.push(decodeDeliverAck(p.body));
        }
      }
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  registry = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
});

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
