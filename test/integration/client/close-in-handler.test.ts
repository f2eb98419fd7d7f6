/**
 * `await consumer.close()` inside the consumer's own handler ("stop after this message"): close()
 * waits for every running handler, that one too, which waited for close(): it hung for
 * closeTimeoutMs (30 s by default), then disconnected with that message unanswered (redelivered).
 * Now the handler's close() resumes once closing has begun, the handler's answer is sent, and the
 * consumer disconnects.
 */
import net from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildHeader } from "../../../src/client/connection.js";
import { type Consumer, createConsumer } from "../../../src/client/consumer.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodePacket, FrameDecoder } from "../../../src/protocol/frame.js";
import {
  decodeDeliverAck,
  encodeConnAuthAck,
  encodeHeartBeat,
  encodeStringMessage,
} from "../../../src/protocol/messages.js";

const acks: boolean[] = [];
let server: net.Server;
let registry: string;

beforeAll(async () => {
  // Pushes one message after each handshake; records the consumer's answers.
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
          s.write(
            encodePacket({
              opaque: 1_000,
              cmdType: CommandType.STRING_MESSAGE,
              body: encodeStringMessage({ header, body: "last" }),
            }),
          );
        } else if (p.cmdType === CommandType.HEARTBEAT) {
          s.write(
            encodePacket({
              opaque: p.opaque,
              cmdType: CommandType.HEARTBEAT,
              body: encodeHeartBeat({ version: 1 }),
            }),
          );
        } else if (p.cmdType === CommandType.DELIVER_ACK) {
          acks.push(decodeDeliverAck(p.body).status);
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

it("a handler that awaits consumer.close() resumes at once, and its ack is sent before the disconnect", async () => {
  let closeInHandlerMs: number | undefined;
  let handled: () => void = () => undefined;
  const handlerDone = new Promise<void>((r) => {
    handled = r;
  });
  const consumer: Promise<Consumer> = createConsumer({
    registry,
    groupId: "g",
    bindings: [],
    closeTimeoutMs: 10_000,
    handler: async () => {
      const self = await consumer; // the push may come before createConsumer resolved
      const started = Date.now();
      await self.close();
      closeInHandlerMs = Date.now() - started;
      handled();
      return true;
    },
  });
  await handlerDone;
  expect(closeInHandlerMs).toBeLessThan(1_000);
  // The close itself, awaited from outside, ends once the handler's ack is sent.
  const started = Date.now();
  await (await consumer).close();
  expect(Date.now() - started).toBeLessThan(1_000);
  await new Promise((r) => setTimeout(r, 100));
  expect(acks).toEqual([true]);
});
