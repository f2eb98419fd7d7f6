/**
 * A producer whose publishes the store refuses (a shard down: "store failed: ..."): it retries
 * with a doubling backoff, not every few hundred ms for its whole send timeout (a walkthrough
 * saw 31-39 attempts per send and 24 refused publishes per message offered), it settles by
 * sendTimeoutMs, and a failure caused by the message itself (SQLSTATE 22xxx) is refused at once.
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createProducer, ErrorCode, KiteqError } from "../../../src/client/index.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodePacket, FrameDecoder } from "../../../src/protocol/frame.js";
import {
  decodeBytesMessage,
  decodeStringMessage,
  encodeConnAuthAck,
  encodeHeartBeat,
  encodeMessageStoreAck,
} from "../../../src/protocol/messages.js";

/** A fake broker that answers every publish false with `feedback`, and counts them. */
async function refusingBroker(
  feedback: string,
): Promise<{ port: number; publishes: () => number; close(): void }> {
  let publishes = 0;
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    const decoder = new FrameDecoder();
    s.on("data", (chunk: Buffer) => {
      for (const p of decoder.push(chunk)) {
        const reply = (cmdType: number, body: Buffer) =>
          s.write(encodePacket({ opaque: p.opaque, cmdType, body }));
        if (p.cmdType === CommandType.CONN_META) {
          reply(CommandType.CONN_AUTH, encodeConnAuthAck({ status: true, feedback: "" }));
        } else if (p.cmdType === CommandType.HEARTBEAT) {
          reply(CommandType.HEARTBEAT, encodeHeartBeat({ version: 1 }));
        } else if (p.cmdType === CommandType.STRING_MESSAGE || p.cmdType === CommandType.BYTES_MESSAGE) {
          publishes++;
          const m =
            p.cmdType === CommandType.STRING_MESSAGE
              ? decodeStringMessage(p.body)
              : decodeBytesMessage(p.body);
          reply(
            CommandType.MESSAGE_STORE_ACK,
            encodeMessageStoreAck({ messageId: m.header.messageId, status: false, feedback }),
          );
        }
      }
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    publishes: () => publishes,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

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

  it("a shard down: a few attempts with a doubling backoff, settled by sendTimeoutMs", async () => {
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
