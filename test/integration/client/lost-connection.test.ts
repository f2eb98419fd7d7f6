/**
 * Pushes waiting for a handler when their connection closes are not run: their answer would reach
 * nobody, and the broker delivers them again (before, each such run was a certain duplicate: a
 * broker restart made a consumer handle its waiting pushes twice).
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { buildHeader } from "../../../src/client/connection.js";
import { createConsumer } from "../../../src/client/consumer.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodePacket, FrameDecoder } from "../../../src/protocol/frame.js";
import { encodeBytesMessage, encodeConnAuthAck } from "../../../src/protocol/messages.js";

/** A fake broker: answers the handshake with `count` pushes in the same write, then drops the connection. */
async function pushThenDrop(count: number, dropAfterMs: number): Promise<{ port: number; close(): void }> {
  const sockets: net.Socket[] = [];
  let first = true;
  const server = net.createServer((s) => {
    sockets.push(s);
    const decoder = new FrameDecoder();
    s.on("data", (chunk) => {
      for (const p of decoder.push(chunk)) {
        if (p.cmdType !== CommandType.CONN_META) continue;
        const packets = [
          encodePacket({
            opaque: p.opaque,
            cmdType: CommandType.CONN_AUTH,
            body: encodeConnAuthAck({ status: true, feedback: "" }),
          }),
        ];
        if (first) {
          first = false;
          for (let i = 0; i < count; i++) {
            const header = buildHeader({ topic: "t", messageType: "m", groupId: "producer" });
            packets.push(
              encodePacket({
                opaque: 100 + i,
                cmdType: CommandType.BYTES_MESSAGE,
                body: encodeBytesMessage({ header, body: Buffer.from(`m${i}`) }),
              }),
            );
          }
          setTimeout(() => s.destroy(), dropAfterMs);
        }
        s.write(Buffer.concat(packets));
      }
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe("client: pushes waiting when their connection closes", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it("are answered without running their handler (the broker redelivers them)", async () => {
    const broker = await pushThenDrop(5, 100);
    cleanups.push(broker.close);
    const ran: string[] = [];
    const consumer = await createConsumer({
      registry: `127.0.0.1:${broker.port}`,
      groupId: "g",
      bindings: [],
      concurrency: 1,
      closeTimeoutMs: 1_000,
      handler: async (m) => {
        ran.push(m.text());
        await new Promise((r) => setTimeout(r, 300));
        return true;
      },
    });
    cleanups.push(() => consumer.close());
    await new Promise((r) => setTimeout(r, 2_000));
    // The first was running when the connection went; the 4 behind it were not started. Before: all 5 ran.
    expect(ran).toEqual(["m0"]);
    expect(consumer.pending).toBe(0);
  });
});
