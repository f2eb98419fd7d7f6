/**
 * Fuzz: 100,000 random and mutated frames against a live broker. The broker must never crash,
 * must keep memory bounded, and must still serve a well-behaved client afterwards.
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { CommandType } from "../../src/protocol/commands.js";
import { encodePacket } from "../../src/protocol/frame.js";
import {
  encodeBytesMessage,
  encodeConnMeta,
  encodeDeliverAck,
  encodeTxACKPacket,
} from "../../src/protocol/messages.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const FRAMES = 100_000;
const CODES = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x11, 0x12, 0x00, 0x07, 0x13, 0xff];

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

/** A deterministic PRNG so a failure can be replayed (seed printed by vitest's output). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("fuzz: random and mutated frames against a live session", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  beforeAll(async () => {
    db = await createTestDatabase();
    broker = await startBrokerProcess(
      ["--db", db.url, "--topics", "trade", "--recieve-permits-per-second", "0"],
      {
        env: { KITEQ_LOG_LEVEL: "info" },
      },
    );
  });
  afterAll(async () => {
    await broker.kill();
    await db.drop();
  });

  it("survives 100,000 frames with bounded memory and still serves clients", async () => {
    const rand = prng(0x5eed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
    const valid = (): Buffer[] => {
      const header = buildHeader({ topic: pick(["trade", "other", ""]), messageType: "t", groupId: "fz" });
      return [
        encodePacket({
          opaque: 1,
          cmdType: CommandType.BYTES_MESSAGE,
          body: encodeBytesMessage({ header, body: bytes(20) }),
        }),
        encodePacket({
          opaque: 2,
          cmdType: CommandType.DELIVER_ACK,
          body: encodeDeliverAck({
            messageId: header.messageId,
            topic: "trade",
            messageType: "t",
            groupId: "fz",
            status: rand() < 0.5,
            feedback: "",
          }),
        }),
        encodePacket({
          opaque: 3,
          cmdType: CommandType.TX_ACK,
          body: encodeTxACKPacket({ header, status: pick([0, 1, 2, 3, -1]), feedback: "" }),
        }),
      ];
    };
    /** A frame whose header stays well-formed: the session must answer or ignore it, never close. */
    const keepsFraming = (): Buffer => {
      const kind = rand();
      if (kind < 0.4)
        return encodePacket({
          opaque: Math.floor(rand() * 2 ** 32),
          cmdType: pick(CODES),
          body: bytes(Math.floor(rand() * 64)),
        });
      const frame = Buffer.from(pick(valid()));
      const flips = 1 + Math.floor(rand() * 4);
      for (let i = 0; i < flips; i++) {
        const at = 19 + Math.floor(rand() * (frame.length - 19));
        frame[at] = Math.floor(rand() * 256);
      }
      return frame;
    };
    /** A frame with a mutated header (length, code): may cost the connection its framing. */
    const breaksFraming = (): Buffer => {
      const frame = Buffer.from(pick(valid()));
      const at = Math.floor(rand() * 19);
      frame[at] = Math.floor(rand() * 256);
      if (rand() < 0.3)
        frame.writeInt32BE(pick([-1, -(2 ** 31), 2 ** 31 - 1, 2 * 1024 * 1024, 2 * 1024 * 1024 - 18]), 15);
      return frame;
    };

    const handshake = encodePacket({
      opaque: 9,
      cmdType: CommandType.CONN_META,
      body: encodeConnMeta({ groupId: "fz", secretKey: "", warmingupSec: 0 }),
    });
    const rssBefore = rssKb(broker.child.pid!);
    let sent = 0;
    let closedByBroker = 0;
    while (sent < FRAMES) {
      const socket = net.connect({ host: broker.host, port: broker.port });
      socket.on("data", () => undefined);
      socket.on("error", () => undefined);
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      socket.write(rand() < 0.95 ? handshake : bytes(30));
      // Mostly well-framed garbage in big writes, then one header mutation at the end.
      for (let batch = 0; batch < 10 && sent < FRAMES; batch++) {
        const frames: Buffer[] = [];
        for (let i = 0; i < 500 && sent < FRAMES; i++, sent++) frames.push(keepsFraming());
        if (!socket.write(Buffer.concat(frames))) {
          await Promise.race([new Promise((r) => socket.once("drain", r)), closed]);
        }
        if (socket.destroyed) break;
      }
      socket.write(breaksFraming());
      sent++;
      socket.end();
      const t = setTimeout(() => socket.destroy(), 2000);
      await closed;
      clearTimeout(t);
      if (!socket.readableEnded) closedByBroker++;
    }
    expect(sent).toBeGreaterThanOrEqual(FRAMES);
    expect(broker.child.exitCode).toBeNull();
    const rssAfter = rssKb(broker.child.pid!);
    // Bounded: nothing per frame is retained (a leak of even 1 KiB a frame would be ~100 MB).
    expect(rssAfter - rssBefore).toBeLessThan(80 * 1024);

    const conn = await KiteqConnection.connect({
      host: broker.host,
      port: broker.port,
      groupId: "ok",
      heartbeatMs: 0,
    });
    const ack = await conn.publish(
      buildHeader({ topic: "trade", messageType: "t", groupId: "ok" }),
      "still alive",
    );
    expect(ack.status).toBe(true);
    conn.close();
    // Some header mutations (negative or oversized lengths) must have cost their connection.
    expect(closedByBroker).toBeGreaterThan(0);
  });
});
