/**
 * ProtocolServer's connection limits on loopback, with a stand-in handler (no database): the
 * node-wide cap, the handshake deadline (cleared by a handshake), and refusals logged
 * rate-limited.
 */
import { once } from "node:events";
import net from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodePacket, FrameDecoder } from "../../../src/protocol/frame.js";
import { decodeConnAuthAck, encodeConnMeta } from "../../../src/protocol/messages.js";
import { ProtocolServer, type ProtocolServerOptions } from "../../../src/server/server.js";
import type { SessionHandler } from "../../../src/server/session.js";

const handler: SessionHandler = {
  authenticate: () => null,
  onAuthenticated: () => undefined,
  onPublish: () => undefined,
  onDeliverAck: () => undefined,
  onTxAck: () => undefined,
  onClose: () => undefined,
};

const servers: ProtocolServer[] = [];
const sockets: net.Socket[] = [];

async function server(options: Partial<ProtocolServerOptions>, level = "warn") {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  const s = new ProtocolServer(handler, { idleTimeoutMs: 0, logger, ...options });
  servers.push(s);
  const { port } = await s.listen("127.0.0.1", 0);
  return { s, port, lines };
}

function connect(port: number): { socket: net.Socket; closed: Promise<number> } {
  const socket = net.connect({ host: "127.0.0.1", port });
  socket.on("error", () => undefined);
  sockets.push(socket);
  const t0 = Date.now();
  // Not events.once: it rejects on 'error', and a peer reset (ECONNRESET after the server's
  // destroy) is a close too.
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now() - t0)));
  return { socket, closed };
}

const handshake = (groupId: string) =>
  encodePacket({
    opaque: 1,
    cmdType: CommandType.CONN_META,
    body: encodeConnMeta({ groupId, secretKey: "", warmingupSec: 0 }),
  });

afterEach(async () => {
  for (const so of sockets.splice(0)) so.destroy();
  for (const s of servers.splice(0)) {
    s.closeSessions();
    await s.stopAccepting();
  }
});

describe("ProtocolServer connection limits", () => {
  it("closes connections beyond maxConnections at once, and accepts again when one leaves", async () => {
    const { s, port, lines } = await server({ maxConnections: 5 });
    const conns = Array.from({ length: 12 }, () => connect(port));
    const states = () => conns.map((c) => c.socket.destroyed || c.socket.readyState === "closed");
    await new Promise((r) => setTimeout(r, 500));
    expect(states().filter(Boolean)).toHaveLength(7);
    expect(s.sessions.size).toBe(5);
    expect(s.refusedConnections).toBe(7);
    const refusals = lines.filter((l) => l.code === "KQ_CONNECTION_LIMIT");
    expect(refusals.length).toBe(5); // the burst; the other 2 only counted until the summary
    expect(refusals[0]).toMatchObject({ limit: "node", max: 5 });
    // One leaves: the next one is accepted.
    const survivor = conns.find((c) => !c.socket.destroyed && c.socket.readyState !== "closed");
    survivor?.socket.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const next = connect(port);
    next.socket.write(handshake("g"));
    const [data] = (await once(next.socket, "data")) as [Buffer];
    const [packet] = new FrameDecoder().push(data);
    expect(decodeConnAuthAck(packet!.body).status).toBe(true);
  });

  it("closes a connection without a handshake at the deadline, however often it sends bytes, and keeps one that completed it", async () => {
    const { port, lines } = await server({ handshakeTimeoutMs: 600, idleTimeoutMs: 400 });
    const slow = connect(port);
    const meta = handshake("g");
    let sent = 0;
    const trickle = setInterval(() => {
      if (sent < meta.length - 1) slow.socket.write(meta.subarray(sent, ++sent));
    }, 100);
    const good = connect(port);
    good.socket.write(meta);
    let goodClosed = false;
    void good.closed.then(() => {
      goodClosed = true;
    });
    const heartbeat = setInterval(
      () =>
        good.socket.write(encodePacket({ opaque: 2, cmdType: CommandType.HEARTBEAT, body: Buffer.alloc(0) })),
      100,
    );
    try {
      const ms = await slow.closed;
      expect(ms).toBeGreaterThanOrEqual(550);
      expect(ms).toBeLessThan(1_200);
      expect(lines.some((l) => l.code === "KQ_HANDSHAKE_TIMEOUT")).toBe(true);
      await new Promise((r) => setTimeout(r, 600));
      expect(goodClosed).toBe(false);
    } finally {
      clearInterval(trickle);
      clearInterval(heartbeat);
    }
  });

  it("a client reconnecting in a loop: its connections' lines are logged one by one up to a bound, then counted", async () => {
    const { port, lines } = await server({}, "info");
    for (let i = 0; i < 60; i++) {
      const c = connect(port);
      await once(c.socket, "connect");
      c.socket.write(handshake("storm"));
      await new Promise((r) => setTimeout(r, 5));
      c.socket.destroy();
      await c.closed;
    }
    await new Promise((r) => setTimeout(r, 100));
    const count = (msg: string) => lines.filter((l) => l.msg === msg).length;
    // Before: 60 of each (three lines a connection).
    expect(count("connection opened")).toBe(20);
    expect(count("connection closed")).toBe(20);
    expect(count("handshake accepted")).toBe(20);
    expect(lines.find((l) => l.msg === "connection opened")).toMatchObject({
      connection: expect.any(String),
      peer: expect.any(String),
    });
  });
});
