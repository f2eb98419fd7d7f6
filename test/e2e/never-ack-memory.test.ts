/**
 * A consumer that never acks costs the broker a few pushes, not a copy of every body per push:
 * each timed-out push was kept for its late ack (30 s) with its whole job, the body and its
 * encoded push, every claim reads the body again, and the connection was sent the group's whole
 * window each round, so one connection took a node to 2.6 GB (a helper's walkthrough: 800
 * messages of 256 kB). Now a timed-out push is remembered by its keys, and a connection that does
 * not answer is sent MIN_UNANSWERED pushes at a time (answer-pace.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType } from "../../src/binding/binding.js";
import { KiteqConnection } from "../../src/client/connection.js";
import { createProducer } from "../../src/client/index.js";
import { freePort } from "../../src/store/embedded.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const MESSAGES = 200;
const BODY = 256 * 1024;

describe("e2e: a consumer that never acks", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  let admin: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    await bind(db.pool, { groupId: "never", topic: "big", messageType: "*", bindType: BindType.Fanout });
    admin = await freePort();
    broker = await startBrokerProcess(
      ["--db", db.url, "--delivery-seconds", "1", "--redelivery", "1:0", "--recieve-permits-per-second", "0"],
      { admin: `127.0.0.1:${admin}` },
    );
  });
  afterAll(async () => {
    await broker?.stop();
    await db?.drop();
  });

  const externalBytes = async () => {
    const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    return Number(/^nodejs_external_memory_bytes (\S+)$/m.exec(text)?.[1]);
  };

  it("keeps about its in-flight bodies, not one per timed-out push", async () => {
    const producer = await createProducer({
      registry: `127.0.0.1:${broker.port}`,
      groupId: "p",
      topics: ["big"],
    });
    const body = Buffer.alloc(BODY, 7);
    for (let i = 0; i < MESSAGES; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, () => producer.send({ topic: "big", messageType: "m", body })),
      );
    }
    await producer.close();
    let pushes = 0;
    const consumer = await KiteqConnection.connect({
      host: "127.0.0.1",
      port: broker.port,
      groupId: "never",
      onMessage: () => {
        pushes++;
        return new Promise<boolean>(() => undefined);
      },
    });
    try {
      // Twelve rounds of timeouts (1 s each, redelivered at once).
      await new Promise((r) => setTimeout(r, 12_000));
      expect(pushes).toBeGreaterThan(0);
      const external = await externalBytes();
      // 50 MB of messages: before, each timed-out push kept a copy (1,212 MB measured here).
      expect(external).toBeLessThan(600 * 1024 * 1024);
    } finally {
      consumer.close();
    }
  }, 90_000);
});
