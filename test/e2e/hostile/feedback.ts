/**
 * A consumer's DELIVER_ACK feedback is client text that goes into the history (the nack row's
 * detail): a NUL byte (PostgreSQL text cannot hold it) or a megabyte of it must cost only that
 * nack's text, never the other nacks written in the same statement, and never the history's size.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType } from "../../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../../src/client/connection.js";
import { messageHistory } from "../../../src/store/history.js";
import { bind } from "../../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../../support/broker-process.js";
import { waitFor } from "../../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../../support/db.js";

describe("hostile: a consumer's nack feedback", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    await bind(db.pool, { groupId: "fb-c", topic: "fb", messageType: "*", bindType: BindType.Fanout });
    broker = await startBrokerProcess([
      "--db",
      db.url,
      "--recieve-permits-per-second",
      "0",
      "--redelivery",
      "1:60",
    ]);
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    await broker.kill();
    await db.drop();
  });

  it("a NUL byte or 1 MB of feedback: every nack recorded, the text made storable and cut", async () => {
    const reasons: Record<string, string> = {};
    const consumer = await KiteqConnection.connect({
      host: "127.0.0.1",
      port: broker.port,
      groupId: "fb-c",
      heartbeatMs: 0,
      // A rejection is answered false with its text as the feedback.
      onMessage: (m) => Promise.reject(reasons[m.header.messageId] ?? "plain"),
    });
    const producer = await KiteqConnection.connect({ host: "127.0.0.1", port: broker.port, groupId: "fb-p" });
    conns.push(consumer, producer);
    const headers = Array.from({ length: 20 }, () =>
      buildHeader({ topic: "fb", messageType: "m", groupId: "fb-p" }),
    );
    reasons[headers[0]!.messageId] = "bad\u0000byte";
    reasons[headers[1]!.messageId] = "x".repeat(1_000_000);
    await Promise.all(headers.map((h) => producer.publish(h, "b")));
    const nackOf = async (id: string) =>
      (await messageHistory(db.pool, id))?.events.find((e) => e.kind === "nacked")?.detail ?? undefined;
    await waitFor(
      async () => (await Promise.all(headers.map((h) => nackOf(h.messageId)))).every((d) => d !== undefined),
      20_000,
      "every nack in the history",
    );
    expect(await nackOf(headers[0]!.messageId)).toBe("consumer answered false: bad\\x00byte");
    const long = (await nackOf(headers[1]!.messageId))!;
    expect(long.length).toBeLessThan(1_100);
    expect(long).toMatch(/^consumer answered false: x+… \(cut: 1000000 characters\)$/);
    expect(await nackOf(headers[2]!.messageId)).toBe("consumer answered false: plain");
  });

  it("a handshake whose groupId PostgreSQL cannot hold (a NUL byte) or too long is refused with the reason", async () => {
    // The group name goes into history rows (a TX_ACK's "commit by producer <group>"): a NUL
    // there failed the statement of every answer batched with it.
    for (const [groupId, reason] of [
      ["fb\u0000evil", "invalid groupId: contains a NUL byte"],
      ["g".repeat(300), "invalid groupId: 300 bytes, at most 255 allowed"],
      ["", "invalid groupId: empty"],
    ] as const) {
      const refused = await KiteqConnection.connect({
        host: "127.0.0.1",
        port: broker.port,
        groupId,
        heartbeatMs: 0,
      })
        .then((c) => {
          c.close();
          return "accepted";
        })
        .catch((e: unknown) => String(e));
      expect(refused).toContain(reason);
    }
  });
});
