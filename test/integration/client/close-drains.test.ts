/**
 * close() sends what it has queued. It used to end and destroy the socket at once, which dropped
 * the bytes the kernel had not taken yet: with a broker that was not reading at that moment, a
 * consumer's last acks were lost (their messages redelivered).
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { KiteqConnection } from "../../../src/client/connection.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodePacket, FrameDecoder } from "../../../src/protocol/frame.js";
import { encodeConnAuthAck } from "../../../src/protocol/messages.js";

/**
 * A one-connection fake broker: answers the handshake, then stops reading until `resume()`, and
 * counts the bytes it gets after the handshake until the client's end.
 */
async function slowReader(): Promise<{
  port: number;
  resume(): void;
  received: Promise<number>;
  close(): void;
}> {
  const sockets: net.Socket[] = [];
  let resolveReceived: (n: number) => void = () => undefined;
  const received = new Promise<number>((r) => {
    resolveReceived = r;
  });
  const server = net.createServer((s) => {
    sockets.push(s);
    const decoder = new FrameDecoder();
    let handshaken = false;
    let bytes = 0;
    s.on("data", (chunk: Buffer) => {
      if (handshaken) {
        bytes += chunk.length;
        return;
      }
      for (const p of decoder.push(chunk)) {
        if (p.cmdType !== CommandType.CONN_META) continue;
        s.write(
          encodePacket({
            opaque: p.opaque,
            cmdType: CommandType.CONN_AUTH,
            body: encodeConnAuthAck({ status: true, feedback: "" }),
          }),
        );
        handshaken = true;
        s.pause();
      }
    });
    s.on("end", () => resolveReceived(bytes));
    s.on("close", () => resolveReceived(bytes));
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    resume: () => {
      for (const s of sockets) s.resume();
    },
    received,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe("client: close() with packets queued for a broker that is not reading", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it("sends every byte before the socket goes", async () => {
    const broker = await slowReader();
    cleanups.push(broker.close);
    const conn = await KiteqConnection.connect({
      host: "127.0.0.1",
      port: broker.port,
      groupId: "g",
      heartbeatMs: 0,
    });
    // 32 MiB: more than loopback's socket buffers take while nobody reads.
    const body = Buffer.alloc(1024 * 1024, 1);
    let sent = 0;
    for (let i = 0; i < 32; i++) {
      conn.request(CommandType.HEARTBEAT, body).catch(() => undefined);
      sent += encodePacket({ opaque: 1, cmdType: CommandType.HEARTBEAT, body }).length;
    }
    await new Promise((r) => setTimeout(r, 100));
    conn.close();
    await new Promise((r) => setTimeout(r, 200));
    broker.resume();
    expect(await broker.received).toBe(sent);
  });
});
