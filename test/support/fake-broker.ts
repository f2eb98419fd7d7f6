/**
 * A fake KiteQ broker for SDK and CLI tests: answers handshakes and heartbeats, and publishes as
 * told (by default never); counts the publishes; pushes messages after each handshake when told
 * and hands their DELIVER_ACKs to the test. kill() drops its connections (clients reconnect).
 */
import net from "node:net";
import { CommandType } from "../../src/protocol/commands.js";
import { encodePacket, FrameDecoder, type Packet } from "../../src/protocol/frame.js";
import {
  type DeliverAck,
  decodeBytesMessage,
  decodeDeliverAck,
  decodeStringMessage,
  encodeConnAuthAck,
  encodeHeartBeat,
  encodeMessageStoreAck,
} from "../../src/protocol/messages.js";

export interface FakeBrokerOptions {
  /** When to answer a handshake (epoch ms; undefined: at once). */
  authAt?: () => number | undefined;
  /** The store ack of a publish: its delay, status and feedback; undefined: never answered. */
  storeAck?: () => { afterMs: number; status: boolean; feedback: string } | undefined;
  /** Pushes (STRING_MESSAGE or BYTES_MESSAGE packets) written after each handshake's answer. */
  pushOnHandshake?: () => { cmdType: number; body: Buffer }[];
  /** Told each DELIVER_ACK a consumer sends (its answer to a push). */
  onDeliverAck?: (ack: DeliverAck) => void;
}

export interface FakeBroker {
  port: number;
  /** `127.0.0.1:port`. */
  address: string;
  publishes(): number;
  kill(): void;
  close(): void;
}

export async function startFakeBroker(options: FakeBrokerOptions = {}): Promise<FakeBroker> {
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
          const answer = () => {
            reply(CommandType.CONN_AUTH, encodeConnAuthAck({ status: true, feedback: "" }));
            for (const [i, push] of (options.pushOnHandshake?.() ?? []).entries()) {
              s.write(encodePacket({ opaque: 1_000 + i, cmdType: push.cmdType, body: push.body }));
            }
          };
          if (at === undefined) answer();
          else setTimeout(answer, Math.max(0, at - Date.now()));
        } else if (p.cmdType === CommandType.HEARTBEAT) {
          reply(CommandType.HEARTBEAT, encodeHeartBeat({ version: 1 }));
        } else if (p.cmdType === CommandType.DELIVER_ACK) {
          options.onDeliverAck?.(decodeDeliverAck(p.body));
        } else if (p.cmdType === CommandType.STRING_MESSAGE || p.cmdType === CommandType.BYTES_MESSAGE) {
          publishes++;
          const m =
            p.cmdType === CommandType.STRING_MESSAGE
              ? decodeStringMessage(p.body)
              : decodeBytesMessage(p.body);
          const ack = options.storeAck?.();
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
  const port = (server.address() as net.AddressInfo).port;
  const kill = () => {
    for (const s of sockets.splice(0)) s.destroy();
  };
  return {
    port,
    address: `127.0.0.1:${port}`,
    publishes: () => publishes,
    kill,
    close: () => {
      kill();
      server.close();
    },
  };
}

/**
 * A fake broker scripted packet by packet, for a test that needs what startFakeBroker does not
 * do (refuse handshakes, check back about a publish): `onPacket` gets each packet a client sends
 * and a `write` to that client; nothing else is answered.
 */
export async function startScriptedBroker(
  onPacket: (
    p: Packet,
    write: (opaque: number, cmdType: number, body: Buffer) => void,
    socket: net.Socket,
  ) => void,
): Promise<{ address: string; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    const decoder = new FrameDecoder();
    const write = (opaque: number, cmdType: number, body: Buffer) => {
      s.write(encodePacket({ opaque, cmdType, body }));
    };
    s.on("data", (chunk: Buffer) => {
      for (const p of decoder.push(chunk)) onPacket(p, write, s);
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: async () => {
      for (const s of sockets.splice(0)) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
