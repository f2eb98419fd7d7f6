import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { CommandType } from "../../src/protocol/commands.js";
import { encodeBytesMessage } from "../../src/protocol/messages.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { alterMessagesTable, createTestDatabase, type TestDatabase } from "../support/db.js";

describe("e2e: handshake and publish validation", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  beforeAll(async () => {
    db = await createTestDatabase();
    broker = await startBrokerProcess(["--db", db.url, "--topics", "trade"], {
      env: { KITEQ_SECRETS: "p1=s3cret,c1=other" },
    });
  });
  afterAll(async () => {
    expect(await broker.stop()).toBe(0);
    // The node recorded itself, and its clean stop.
    const { rows } = await db.pool.query("SELECT address, stopped_at FROM nodes");
    expect(rows).toHaveLength(1);
    expect(rows[0].address).toBe(`127.0.0.1:${broker.port}`);
    expect(rows[0].stopped_at).not.toBeNull();
    await db.drop();
  });

  const connect = (secretKey: string, groupId = "p1") =>
    KiteqConnection.connect({ host: broker.host, port: broker.port, groupId, secretKey, heartbeatMs: 0 });

  it("refuses a handshake with a wrong secret, and closes the connection", async () => {
    await expect(connect("wrong")).rejects.toMatchObject({ code: "KQ_AUTH_REFUSED" });
    await expect(connect("s3cret", "unknown-group")).rejects.toMatchObject({ code: "KQ_AUTH_REFUSED" });
  });

  it("refuses a publish before the handshake", async () => {
    const net = await import("node:net");
    const { encodePacket, FrameDecoder } = await import("../../src/protocol/frame.js");
    const { decodeMessageStoreAck } = await import("../../src/protocol/messages.js");
    const socket = net.connect({ host: broker.host, port: broker.port });
    const header = buildHeader({ topic: "trade", messageType: "t", groupId: "p1" });
    socket.write(
      encodePacket({
        opaque: 7,
        cmdType: CommandType.BYTES_MESSAGE,
        body: encodeBytesMessage({ header, body: Buffer.from("x") }),
      }),
    );
    const decoder = new FrameDecoder();
    const packets: { opaque: number; body: Buffer }[] = [];
    await new Promise<void>((resolve) => {
      socket.on("data", (c: Buffer) => packets.push(...decoder.push(c)));
      socket.on("close", () => resolve());
    });
    expect(packets).toHaveLength(1);
    expect(packets[0]!.opaque).toBe(7);
    const ack = decodeMessageStoreAck(packets[0]!.body);
    expect(ack).toMatchObject({ status: false, messageId: header.messageId });
    expect(ack.feedback).toMatch(/not authenticated/);
  });

  it("answers an unknown topic, a bad messageId and an expired message with false and a reason", async () => {
    const conn = await connect("s3cret");
    const base = { messageType: "pay", groupId: "p1" };
    const unknown = await conn.publish(buildHeader({ ...base, topic: "nope" }), "x");
    expect(unknown).toMatchObject({ status: false });
    expect(unknown.feedback).toMatch(/unsupported topic/);
    const badId = await conn.publish(buildHeader({ ...base, topic: "trade", messageId: "xyz" }), "x");
    expect(badId.status).toBe(false);
    expect(badId.feedback).toMatch(/messageId/);
    const expired = await conn.publish(
      buildHeader({ ...base, topic: "trade", expiredTime: Math.floor(Date.now() / 1000) - 10 }),
      "x",
    );
    expect(expired.status).toBe(false);
    expect(expired.feedback).toMatch(/expired message/);
    const ok = await conn.publish(buildHeader({ ...base, topic: "trade" }), randomBytes(10));
    expect(ok).toMatchObject({ status: true });
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM messages");
    expect(rows[0].n).toBe(1);
    conn.close();
  });

  it("answers false, never true, when the transaction holding the message fails", async () => {
    await db.pool.query(`CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.message_type = 'poison' THEN RAISE EXCEPTION 'poisoned batch'; END IF; RETURN NEW; END $$`);
    await alterMessagesTable(
      db.pool,
      "CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION poison()",
    );
    const conn = await connect("s3cret");
    const bad = await conn.publish(
      buildHeader({ topic: "trade", messageType: "poison", groupId: "p1" }),
      "x",
    );
    expect(bad.status).toBe(false);
    expect(bad.feedback).toMatch(/store failed: .*poisoned batch/);
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM messages WHERE message_id = $1", [
      bad.messageId,
    ]);
    expect(rows[0].n).toBe(0);
    const good = await conn.publish(buildHeader({ topic: "trade", messageType: "fine", groupId: "p1" }), "x");
    expect(good.status).toBe(true);
    conn.close();
  });

  it("answers a heartbeat with the same opaque and version", async () => {
    const conn = await connect("s3cret");
    const { encodeHeartBeat, decodeHeartBeat } = await import("../../src/protocol/messages.js");
    const reply = await conn.request(CommandType.HEARTBEAT, encodeHeartBeat({ version: 123456789 }));
    expect(reply.cmdType).toBe(CommandType.HEARTBEAT);
    expect(decodeHeartBeat(reply.body).version).toBe(123456789);
    conn.close();
  });

  it("stores a fly message nowhere but acks it", async () => {
    const conn = await connect("s3cret");
    const ack = await conn.publish(
      buildHeader({ topic: "trade", messageType: "f", groupId: "p1", fly: true }),
      "x",
    );
    expect(ack.status).toBe(true);
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM messages WHERE message_id = $1", [
      ack.messageId,
    ]);
    expect(rows[0].n).toBe(0);
    conn.close();
  });
});
