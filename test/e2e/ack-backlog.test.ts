/**
 * Acks that cannot be written as fast as consumers answer (the store slow or failing for acks)
 * slow the node's pushes down instead of piling up in its memory. Before, the node went on
 * claiming and pushing, each acked job and its ack held until written: in a 4-minute run at
 * 2 x 2,000 msg/s, once ack batches ran into their statement timeout, 257,000 acks were queued
 * and the broker grew to 0.9 GB (and the lease renewals of all those held jobs loaded PostgreSQL
 * further). Now acks answered and not written beyond UNWRITTEN_ACKS_FREE take room from the group.
 *
 * The failure is injected in PostgreSQL: while a flag row exists, a trigger fails every delete of
 * a delivery (an ack) with a connection-class error, so the ack batches are retried.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { UNWRITTEN_ACKS_FREE } from "../../src/delivery/local-group.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const MESSAGES = 12_000;

let db: TestDatabase;
let broker: BrokerProcess | undefined;
const conns: KiteqConnection[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await bind(db.pool, { groupId: "g", topic: "t", messageType: "m", watermark: 1_000_000 });
  await db.pool.query(`
    CREATE TABLE acks_failing (since timestamptz);
    CREATE FUNCTION acks_failing() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM acks_failing) THEN
        RAISE EXCEPTION 'injected: acks cannot be written' USING ERRCODE = '08006';
      END IF;
      RETURN OLD;
    END $$;
    CREATE TRIGGER acks_failing BEFORE DELETE ON deliveries FOR EACH ROW EXECUTE FUNCTION acks_failing();
    INSERT INTO acks_failing VALUES (now());`);
});

afterAll(async () => {
  for (const c of conns) c.close();
  await broker?.kill();
  await db?.drop();
});

it("acks not written take the group's room: the node pushes a bounded number more, then the rest once they are written", async () => {
  broker = await startBrokerProcess([
    "--db",
    db.url,
    "--max-watermark",
    "0",
    "--recieve-permits-per-second",
    "0",
  ]);
  const consumer = await recordingConsumer(broker.port, "g");
  conns.push(consumer.conn);
  const producer = await KiteqConnection.connect({
    host: broker.host,
    port: broker.port,
    groupId: "p",
    heartbeatMs: 0,
  });
  conns.push(producer);
  for (let i = 0; i < MESSAGES; i += 500) {
    const acks = await Promise.all(
      Array.from({ length: 500 }, () =>
        producer.publish(buildHeader({ topic: "t", messageType: "m", groupId: "p" }), "x"),
      ),
    );
    expect(acks.every((a) => a.status)).toBe(true);
  }
  // Every ack fails while the flag row is there: the pushes stop at the free allowance plus the
  // group's room (2 x 1,000 prefetch), give or take a batch.
  const bound = UNWRITTEN_ACKS_FREE + 2_000 + 1_000;
  let last = -1;
  await waitFor(
    async () => {
      const n = consumer.received.length;
      const still = n === last;
      last = n;
      await new Promise((r) => setTimeout(r, 1000));
      return still;
    },
    30_000,
    "the pushes to stop",
  );
  const whileFailing = consumer.received.length;
  // Before: all 12,000 pushed (and acked by the consumer), their acks held in memory.
  expect(whileFailing).toBeGreaterThan(UNWRITTEN_ACKS_FREE);
  expect(whileFailing).toBeLessThanOrEqual(bound);

  // The acks can be written again: the backlog drains, every message is delivered once.
  await db.pool.query("DELETE FROM acks_failing");
  await waitFor(() => consumer.received.length >= MESSAGES, 60_000, "every message delivered");
  await waitFor(
    async () => {
      const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM deliveries");
      return rows[0]!.n === 0;
    },
    30_000,
    "every ack written",
  );
  const ids = consumer.ids();
  expect(new Set(ids).size).toBe(MESSAGES);
  expect(ids.length).toBe(MESSAGES);
  console.log(`acks failing: ${whileFailing} of ${MESSAGES} pushed; after: all ${MESSAGES}, once each`);
}, 120_000);
