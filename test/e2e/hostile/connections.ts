/**
 * Hostile clients against a live broker process (issue 12), connection limits and Regx bindings:
 * a peer that trickles its handshake, a connection flood from one address, a consumer that never
 * reads, and a consumer binding a catastrophic or invalid Regx pattern. Each test asserts what
 * the bad client gets AND that a well-behaved producer and consumer, working in the same moment,
 * are unaffected (every publish acked true, every message delivered exactly once).
 *
 * Everything runs on loopback; the flood comes from 127.0.0.2 so that the per-address cap does
 * not touch the well-behaved clients on 127.0.0.1.
 */
import { execFile } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType, createBinding } from "../../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../../src/client/connection.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodePacket } from "../../../src/protocol/frame.js";
import { encodeConnMeta } from "../../../src/protocol/messages.js";
import { listBindings, upsertBinding } from "../../../src/store/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../../support/broker-process.js";
import { cliArgs } from "../../support/built-src.js";
import { type RecordingConsumer, recordingConsumer, waitFor } from "../../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../../support/db.js";

const ROOT = path.resolve(import.meta.dirname, "../../..");
const HANDSHAKE_SECONDS = 2;
const PER_ADDRESS = 20;
const WRITE_BUFFER_BYTES = 256 * 1024;
const FLOOD_ADDRESS = "127.0.0.2";

/** `kiteq-pg ...args` as a child process; resolves with its exit code and output. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      cliArgs(args),
      { cwd: ROOT, timeout: 60_000, env: { ...process.env, VITEST: undefined, KITEQ_LOG_LEVEL: undefined } },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The CONN_META packet of `groupId` (what a client sends first). */
function connMeta(groupId: string): Buffer {
  return encodePacket({
    opaque: 1,
    cmdType: CommandType.CONN_META,
    body: encodeConnMeta({ groupId, secretKey: "", warmingupSec: 0 }),
  });
}

describe("e2e hostile: connections and Regx bindings", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  /** The well-behaved producer and consumer (127.0.0.1). */
  let producer: KiteqConnection;
  let calm: RecordingConsumer;
  const open: KiteqConnection[] = [];

  const bind = (groupId: string, topic: string, messageType: string, bindType: 0 | 1 | 2) =>
    upsertBinding(
      db.pool,
      createBinding({ groupId, topic, messageType, bindType, watermark: 1000, persistent: true }),
      "cli",
      new Date(),
    );
  const logsWith = (code: string) => broker.logs.filter((l) => l.code === code);

  /**
   * Well-behaved traffic while `hostile` runs: one publish every 20 ms (at least 5) on topic
   * "calm"; then every ack must be true and the calm consumer must get each message exactly once.
   */
  async function alongside<T>(hostile: Promise<T>): Promise<T> {
    let done = false;
    const settled = hostile.finally(() => {
      done = true;
    });
    const acks: { status: boolean; id: string; ms: number }[] = [];
    const publishing = (async () => {
      while (!done || acks.length < 5) {
        const header = buildHeader({ topic: "calm", messageType: "c", groupId: "p-calm" });
        const t0 = Date.now();
        const ack = await producer.publish(header, "calm");
        acks.push({ status: ack.status, id: header.messageId, ms: Date.now() - t0 });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const result = await settled;
    await publishing;
    expect(acks.every((a) => a.status)).toBe(true);
    const ids = new Set(acks.map((a) => a.id));
    await waitFor(() => calm.ids().filter((id) => ids.has(id)).length >= ids.size, 10_000, "calm deliveries");
    await new Promise((r) => setTimeout(r, 200));
    const got = calm.ids().filter((id) => ids.has(id));
    expect(got.length).toBe(ids.size); // each exactly once
    expect(new Set(got)).toEqual(ids);
    // No ack waited behind the hostile client (a stalled event loop would show here).
    expect(Math.max(...acks.map((a) => a.ms))).toBeLessThan(2_000);
    return result;
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    await bind("g-calm", "calm", "c", BindType.Direct);
    await bind("g-slow", "slow", "s", BindType.Direct);
    await bind("g-all", "regx", "*", BindType.Fanout);
    broker = await startBrokerProcess([
      "--db",
      db.url,
      "--recieve-permits-per-second",
      "0",
      "--handshake-timeout-seconds",
      String(HANDSHAKE_SECONDS),
      "--max-connections-per-address",
      String(PER_ADDRESS),
      "--max-write-buffer-bytes",
      String(WRITE_BUFFER_BYTES),
    ]);
    producer = await KiteqConnection.connect({
      host: broker.host,
      port: broker.port,
      groupId: "p-calm",
      heartbeatMs: 0,
    });
    open.push(producer);
    calm = await recordingConsumer(broker.port, "g-calm");
    open.push(calm.conn);
  });
  afterAll(async () => {
    for (const c of open) c.close();
    if (broker !== undefined) expect(await broker.stop()).toBe(0);
    await db?.drop();
  });

  it("closes a peer that trickles its handshake one byte at a time, at the handshake deadline", async () => {
    const socket = net.connect({ host: broker.host, port: broker.port });
    await once(socket, "connect");
    const t0 = Date.now();
    const received: Buffer[] = [];
    socket.on("data", (c: Buffer) => received.push(c));
    socket.on("error", () => undefined);
    // A byte every 250 ms: far more often than the idle timeout, never a whole CONN_META.
    const meta = connMeta("trickler");
    let sent = 0;
    const trickle = setInterval(() => {
      if (sent < meta.length - 1 && !socket.destroyed) socket.write(meta.subarray(sent, ++sent));
    }, 250);
    try {
      const closedAfterMs = await alongside(
        new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now() - t0))),
      );
      expect(closedAfterMs).toBeGreaterThanOrEqual(HANDSHAKE_SECONDS * 1000 - 100);
      expect(closedAfterMs).toBeLessThan(HANDSHAKE_SECONDS * 1000 + 1_500);
      expect(sent).toBeGreaterThanOrEqual(5); // it kept sending until the end
      expect(Buffer.concat(received).length).toBe(0); // no CONN_AUTH, nothing at all
      expect(logsWith("KQ_HANDSHAKE_TIMEOUT").length).toBeGreaterThanOrEqual(1);
    } finally {
      clearInterval(trickle);
      socket.destroy();
    }
  }, 30_000);

  it("refuses a connection flood from one address beyond the per-address cap, at once, logging a few lines", async () => {
    const flood = 3 * PER_ADDRESS;
    const closedAt: (number | undefined)[] = new Array(flood).fill(undefined);
    const t0 = Date.now();
    const sockets = Array.from({ length: flood }, (_, i) => {
      const s = net.connect({ host: broker.host, port: broker.port, localAddress: FLOOD_ADDRESS });
      s.on("error", () => undefined);
      s.on("close", () => {
        closedAt[i] = Date.now() - t0;
      });
      return s;
    });
    try {
      const fresh = await alongside(
        (async () => {
          // Within 1 s (well before the handshake deadline) the refused ones are closed.
          await waitFor(
            () => closedAt.filter((t) => t !== undefined).length >= flood - PER_ADDRESS,
            5_000,
            "refusals",
          );
          await new Promise((r) => setTimeout(r, 300));
          // A new well-behaved client from another address connects and publishes meanwhile.
          const c = await KiteqConnection.connect({
            host: broker.host,
            port: broker.port,
            groupId: "p-fresh",
            heartbeatMs: 0,
          });
          const ack = await c.publish(
            buildHeader({ topic: "calm", messageType: "c", groupId: "p-fresh" }),
            "x",
          );
          const ids = [ack.messageId];
          c.close();
          return { ack, ids };
        })(),
      );
      expect(fresh.ack.status).toBe(true);
      const closed = closedAt.filter((t): t is number => t !== undefined);
      expect(closed.length).toBe(flood - PER_ADDRESS);
      expect(Math.max(...closed)).toBeLessThan(HANDSHAKE_SECONDS * 1000);
      // Rate-limited: a handful of lines for 40 refusals, not one each.
      const lines = logsWith("KQ_CONNECTION_LIMIT");
      expect(lines.length).toBeGreaterThanOrEqual(1);
      expect(lines.length).toBeLessThanOrEqual(5);
      expect(lines[0]).toMatchObject({ peer: FLOOD_ADDRESS, limit: "address", max: PER_ADDRESS });
      // The calm consumer got the fresh client's message too (and only once).
      await waitFor(() => calm.ids().includes(fresh.ids[0] as string), 5_000, "fresh delivery");
    } finally {
      for (const s of sockets) s.destroy();
    }
    // Once the flood is gone, the address may connect again (the count went back down).
    await waitFor(() => closedAt.every((t) => t !== undefined), 5_000, "flood closed");
    await new Promise((r) => setTimeout(r, 200));
    const again = net.connect({ host: broker.host, port: broker.port, localAddress: FLOOD_ADDRESS });
    again.on("error", () => undefined);
    await once(again, "connect");
    again.write(connMeta("p-again"));
    const [answer] = (await once(again, "data")) as [Buffer];
    expect(answer.length).toBeGreaterThan(0); // CONN_AUTH came back: accepted
    again.destroy();
  }, 30_000);

  it("closes a consumer that never reads once its unsent bytes pass the bound, and redelivers its messages to a healthy consumer", async () => {
    const count = 320;
    const body = Buffer.alloc(40 * 1024, 0x61);
    // The bad consumer: handshakes, then never reads a byte.
    const bad = net.connect({ host: broker.host, port: broker.port });
    bad.on("error", () => undefined);
    await once(bad, "connect");
    bad.pause();
    bad.write(connMeta("g-slow"));
    await waitFor(
      () => broker.logs.some((l) => l.msg === "handshake accepted" && l.groupId === "g-slow"),
      5_000,
      "bad consumer handshake",
    );
    const slowProducer = await KiteqConnection.connect({
      host: broker.host,
      port: broker.port,
      groupId: "p-slow",
      heartbeatMs: 0,
    });
    open.push(slowProducer);
    const published = await alongside(
      (async () => {
        const acks = await Promise.all(
          Array.from({ length: count }, () =>
            slowProducer.publish(buildHeader({ topic: "slow", messageType: "s", groupId: "p-slow" }), body),
          ),
        );
        expect(acks.every((a) => a.status)).toBe(true);
        await waitFor(() => logsWith("KQ_SLOW_CONSUMER").length > 0, 20_000, "slow consumer closed");
        return acks.map((a) => a.messageId);
      })(),
    );
    // Logged once, with the bound and the group.
    const lines = logsWith("KQ_SLOW_CONSUMER");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ groupId: "g-slow", maxUnsentBytes: WRITE_BUFFER_BYTES });
    expect(lines[0]?.unsentBytes as number).toBeGreaterThan(WRITE_BUFFER_BYTES);
    // What the bad client gets: what the kernel held, then the end of the connection.
    let got = 0;
    bad.on("data", (c: Buffer) => {
      got += c.length;
    });
    // A reset (the broker destroys a socket with data unread) is a close too: not events.once,
    // which rejects on 'error'.
    bad.on("error", () => undefined);
    const closed = new Promise((resolve) => bad.once("close", resolve));
    bad.resume();
    await Promise.race([
      closed,
      new Promise((_, reject) => setTimeout(() => reject(new Error("bad consumer not closed")), 10_000)),
    ]);
    expect(got).toBeLessThan(count * body.length);
    // Nothing lost: a healthy consumer of the same group gets every message.
    const healthy = await recordingConsumer(broker.port, "g-slow");
    open.push(healthy.conn);
    await waitFor(() => new Set(healthy.ids()).size >= count, 30_000, "redelivery to the healthy consumer");
    expect(new Set(healthy.ids())).toEqual(new Set(published));
    // The healthy consumer took the same burst (the whole window at once) and was not cut off.
    expect(logsWith("KQ_SLOW_CONSUMER")).toHaveLength(1);
    expect(healthy.conn.isClosed).toBe(false);
  }, 90_000);

  it("a catastrophic Regx binding costs nothing, and an invalid one is refused alone", async () => {
    const evilPattern = "(a+)+$";
    const [evilBind, badBind] = await alongside(
      Promise.all([
        cli([
          "bind",
          "add",
          "--group",
          "g-evil",
          "--topic",
          "regx",
          "--type",
          "regx",
          "--message-type",
          evilPattern,
          "--db",
          db.url,
        ]),
        cli([
          "bind",
          "add",
          "--group",
          "g-bad",
          "--topic",
          "regx",
          "--type",
          "regx",
          "--message-type",
          "(?=x)",
          "--db",
          db.url,
        ]),
      ]),
    );
    // Valid Go syntax (catastrophic only for a backtracking engine): accepted.
    expect(evilBind.code).toBe(0);
    // Not Go syntax: refused before anything is written, naming group, topic and pattern.
    expect(badBind.code).toBe(2);
    expect(badBind.stderr).toMatch(/group g-bad topic regx: Regx pattern "\(\?=x\)" refused/);
    const bindings = await listBindings(db.pool);
    expect(bindings.some((b) => b.groupId === "g-bad")).toBe(false);
    expect(bindings.find((b) => b.groupId === "g-evil")?.messageType).toBe(evilPattern);

    const evil = await recordingConsumer(broker.port, "g-evil");
    const all = await recordingConsumer(broker.port, "g-all");
    open.push(evil.conn, all.conn);
    // The broker reloads its bindings on NOTIFY: wait until a matching message reaches g-evil.
    const matching: string[] = [];
    await waitFor(
      async () => {
        const ack = await producer.publish(
          buildHeader({ topic: "regx", messageType: "aaaa", groupId: "p-calm" }),
          "m",
        );
        matching.push(ack.messageId);
        await new Promise((r) => setTimeout(r, 100));
        return evil.ids().length > 0;
      },
      10_000,
      "g-evil binding loaded",
    );
    // 40 a's and a "!": 2^40 steps for a backtracking engine; milliseconds here.
    const hostileType = `${"a".repeat(40)}!`;
    const hostile = await alongside(
      (async () => {
        const acks: { id: string; status: boolean; ms: number }[] = [];
        for (let i = 0; i < 20; i++) {
          const header = buildHeader({ topic: "regx", messageType: hostileType, groupId: "p-calm" });
          const t0 = Date.now();
          const ack = await producer.publish(header, "x");
          acks.push({ id: header.messageId, status: ack.status, ms: Date.now() - t0 });
        }
        return acks;
      })(),
    );
    expect(hostile.every((a) => a.status)).toBe(true);
    expect(Math.max(...hostile.map((a) => a.ms))).toBeLessThan(1_000);
    const expectedAll = new Set([...matching, ...hostile.map((a) => a.id)]);
    await waitFor(() => new Set(all.ids()).size >= expectedAll.size, 10_000, "fanout deliveries");
    await new Promise((r) => setTimeout(r, 300));
    expect(new Set(all.ids())).toEqual(expectedAll);
    // g-evil got the messages its pattern matches ("aaaa"), never the hostile ones.
    expect(evil.ids().every((id) => matching.includes(id))).toBe(true);
    expect(evil.ids().some((id) => hostile.some((h) => h.id === id))).toBe(false);
  }, 90_000);
});
