/**
 * How a send ends when sendTimeoutMs runs out. No attempt goes out with less than 100 ms left, also
 * the first one after a wait for a connection (a walkthrough: 13 sends sent with a few ms left,
 * stored and delivered, reported "KQ_TIMEOUT: not stored within 5000 ms ... no store ack within
 * 6 ms"); a send whose store ack did not come says its outcome is unknown; one every broker
 * refused before storing ("broker shutting down") says so, not "not stored within".
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

interface FakeBrokerOptions {
  /** When to answer a handshake (epoch ms; undefined: at once). */
  authAt?: () => number | undefined;
  /** The store ack of a publish: its delay, status and feedback; undefined: never answered. */
  storeAck: () => { afterMs: number; status: boolean; feedback: string } | undefined;
}

/** A fake broker answering handshakes, heartbeats and publishes as told; counts the publishes. */
async function fakeBroker(options: FakeBrokerOptions) {
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
          const at = options.authAt?.();
          const answer = () =>
            reply(CommandType.CONN_AUTH, encodeConnAuthAck({ status: true, feedback: "" }));
          if (at === undefined) answer();
          else setTimeout(answer, Math.max(0, at - Date.now()));
        } else if (p.cmdType === CommandType.HEARTBEAT) {
          reply(CommandType.HEARTBEAT, encodeHeartBeat({ version: 1 }));
        } else if (p.cmdType === CommandType.STRING_MESSAGE || p.cmdType === CommandType.BYTES_MESSAGE) {
          publishes++;
          const m =
            p.cmdType === CommandType.STRING_MESSAGE
              ? decodeStringMessage(p.body)
              : decodeBytesMessage(p.body);
          const ack = options.storeAck();
          if (ack === undefined) continue;
          setTimeout(
            () =>
              reply(
                CommandType.MESSAGE_STORE_ACK,
                encodeMessageStoreAck({
                  messageId: m.header.messageId,
                  status: ack.status,
                  feedback: ack.feedback,
                }),
              ),
            ack.afterMs,
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
    /** Drop the connections (the producer reconnects). */
    kill: () => {
      for (const s of sockets.splice(0)) s.destroy();
    },
    close: () => {
      for (const s of sockets.splice(0)) s.destroy();
      server.close();
    },
  };
}

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
    const broker = await fakeBroker({
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
    const broker = await fakeBroker({ storeAck: () => undefined });
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
    const broker = await fakeBroker({
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
