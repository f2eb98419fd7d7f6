import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType } from "../../src/binding/binding.js";
import { KiteqConnection } from "../../src/client/connection.js";
import type { Header } from "../../src/protocol/messages.js";
import { ensurePartitions } from "../../src/store/db.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { MAX_CHECKS_IN_FLIGHT } from "../../src/tx/producers.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, FAST_TX_CHECKS, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const PENDING = 3 * MAX_CHECKS_IN_FLIGHT;

describe("e2e: check-backs in flight per producer connection", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;

  beforeAll(async () => {
    db = await createTestDatabase();
    await bind(db.pool, { groupId: "g-win", topic: "win", messageType: "*", bindType: BindType.Fanout });
    // Uncommitted messages whose producer is gone, all due for a check.
    const now = new Date();
    await ensurePartitions(db.pool, now);
    const records = Array.from({ length: PENDING }, () =>
      publishRecord(now, [], {
        topic: "win",
        messageType: "m",
        groupId: "p-win",
        commit: false,
        deliverLimit: 10,
        body: Buffer.from("win"),
      }),
    );
    await insertPublishBatch(db.pool, records, {
      now,
      nodeId: "gone",
      leaseUntil: now,
      firstTxCheckAt: now,
    });
    // Every second a check is due again: without a window, unanswered ones are sent again and again.
    broker = await startBrokerProcess(["--db", db.url, ...FAST_TX_CHECKS]);
  });
  afterAll(async () => {
    await broker?.stop();
    await db?.drop();
  });

  it("a producer that is slow to answer gets at most the window; as it answers it gets the rest, each committed once", async () => {
    const consumer = await recordingConsumer(broker.port, "g-win");
    const checks: Header[] = [];
    let answerNow = false;
    const held: (() => void)[] = [];
    const producer = await KiteqConnection.connect({
      host: "127.0.0.1",
      port: broker.port,
      groupId: "p-win",
      heartbeatMs: 0,
      onTxCheck: (h) => {
        checks.push(h);
        if (answerNow) return 1;
        return new Promise<number>((resolve) => held.push(() => resolve(1)));
      },
    });
    try {
      await waitFor(() => checks.length >= MAX_CHECKS_IN_FLIGHT, 15_000, "the first window of checks");
      // Three more check intervals with nothing answered: nothing more is sent.
      await new Promise((r) => setTimeout(r, 3500));
      expect(checks.length).toBe(MAX_CHECKS_IN_FLIGHT);
      answerNow = true;
      for (const answer of held.splice(0)) answer();
      await waitFor(
        async () => {
          const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM pending_transactions");
          return rows[0].n === 0;
        },
        60_000,
        "every message committed",
      );
      await waitFor(() => consumer.received.length >= PENDING, 30_000, "every message delivered");
      expect(new Set(consumer.ids()).size).toBe(PENDING);
    } finally {
      producer.close();
      consumer.conn.close();
    }
  });
});
