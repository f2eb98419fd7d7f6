/**
 * A broker pushes as soon as a consumer's handshake is done, so the first push can arrive in the
 * same TCP chunk as the handshake's reply. The consumer's handler must already be in place then
 * (it used to be set after connect() resolved: that push was answered false and redelivered).
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../../src/client/connection.js";
import { createConsumer } from "../../../src/client/consumer.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodePacket, FrameDecoder } from "../../../src/protocol/frame.js";
import { decodeDeliverAck, encodeBytesMessage, encodeConnAuthAck } from "../../../src/protocol/messages.js";

/** A one-connection fake broker: answers the handshake and pushes one message in the same write. */
async function fakeBroker(): Promise<{ port: number; acks: Promise<boolean[]>; close(): void }> {
  const sockets: net.Socket[] = [];
  let resolveAcks: (v: boolean[]) => void = () => undefined;
  const acks = new Promise<boolean[]>((r) => {
    resolveAcks = r;
  });
  const server = net.createServer((s) => {
    sockets.push(s);
    const decoder = new FrameDecoder();
    const got: boolean[] = [];
    s.on("data", (chunk) => {
      for (const p of decoder.push(chunk)) {
        if (p.cmdType === CommandType.CONN_META) {
          const header = buildHeader({ topic: "t", messageType: "m", groupId: "producer" });
          s.write(
            Buffer.concat([
              encodePacket({
                opaque: p.opaque,
                cmdType: CommandType.CONN_AUTH,
                body: encodeConnAuthAck({ status: true, feedback: "" }),
              }),
              encodePacket({
                opaque: 7,
                cmdType: CommandType.BYTES_MESSAGE,
                body: encodeBytesMessage({ header, body: Buffer.from("x") }),
              }),
            ]),
          );
        } else if (p.cmdType === CommandType.DELIVER_ACK) {
          got.push(decodeDeliverAck(p.body).status);
          resolveAcks(got);
        }
      }
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    acks,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe("client: a push in the same chunk as the handshake reply", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it("KiteqConnection with onMessage given to connect(): the push is handled and acked true", async () => {
    const broker = await fakeBroker();
    cleanups.push(broker.close);
    const seen: string[] = [];
    const conn = await KiteqConnection.connect({
      host: "127.0.0.1",
      port: broker.port,
      groupId: "g",
      heartbeatMs: 0,
      onMessage: (m) => {
        seen.push(String(m.body));
        return true;
      },
    });
    cleanups.push(() => conn.close());
    expect(await broker.acks).toEqual([true]);
    expect(seen).toEqual(["x"]);
  });

  it("the SDK consumer: the first push is handled, not refused", async () => {
    const broker = await fakeBroker();
    cleanups.push(broker.close);
    const seen: string[] = [];
    const consumer = await createConsumer({
      registry: `127.0.0.1:${broker.port}`,
      groupId: "g",
      bindings: [],
      handler: (m) => {
        seen.push(typeof m.body === "string" ? m.body : m.body.toString());
        return true;
      },
    });
    cleanups.push(() => consumer.close());
    expect(await broker.acks).toEqual([true]);
    expect(seen).toEqual(["x"]);
  });
});
