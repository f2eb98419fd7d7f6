/**
 * A database away longer than the lease while this node holds its consumer's ack, unwritten: the
 * ack is retried (backing off up to 5 s), the lease lapses, and when the database is back the
 * node's next claim takes the delivery again. Before, it pushed it again: the consumer handled a
 * message it had acked (a walkthrough: 29 after a 40 s PostgreSQL outage).
 *
 * The same with the consumer's answer not yet given when the node claims the delivery again (its
 * handler still running): the claim adopts the push in flight. Before, it pushed again, and the
 * consumer got the message twice while handling it once.
 *
 * The outage is injected in PostgreSQL itself: while a flag row exists, a trigger fails acks and
 * lease renewals of deliveries with a connection-class error, and lets claims through (as the
 * claim that runs first when the database is back).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

let db: TestDatabase;
let broker: BrokerProcess | undefined;
const conns: KiteqConnection[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await bind(db.pool, { groupId: "g", topic: "t", messageType: "m" });
  await bind(db.pool, { groupId: "g2", topic: "t2", messageType: "m" });
  await db.pool.query(`
    CREATE TABLE injected_outage (on_since timestamptz);
    CREATE FUNCTION injected_outage() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      -- Acks (delete) and lease renewals (an update keeping the epoch) fail; a claim (a new
      -- epoch) goes through: the claim that ran first when the database came back.
      IF (TG_OP = 'DELETE' OR NEW.claim_epoch = OLD.claim_epoch) AND EXISTS (SELECT 1 FROM injected_outage) THEN
        RAISE EXCEPTION 'injected outage' USING ERRCODE = '08006';
      END IF;
      RETURN COALESCE(NEW, OLD);
    END $$;
    CREATE TRIGGER injected_outage BEFORE UPDATE OR DELETE ON deliveries
      FOR EACH ROW EXECUTE FUNCTION injected_outage();`);
});

afterAll(async () => {
  for (const c of conns) c.close();
  await broker?.kill();
  await db?.drop();
});

const claimEpochOf = async (groupId: string): Promise<number | undefined> => {
  const { rows } = await db.pool.query("SELECT claim_epoch FROM deliveries WHERE group_id = $1", [groupId]);
  return rows[0]?.claim_epoch;
};
const owedTo = async (groupId: string): Promise<number> => {
  const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM deliveries WHERE group_id = $1", [
    groupId,
  ]);
  return rows[0].n;
};
/** A broker on the test database with a lease of 2 s and a push timeout of `deliverySeconds`. */
const startBroker = (deliverySeconds: number) =>
  startBrokerProcess([
    "--db",
    db.url,
    "--delivery-seconds",
    String(deliverySeconds),
    "--lease-seconds",
    "2",
    "--recover-seconds",
    "1",
    "--recieve-permits-per-second",
    "0",
  ]);

const connectProducer = (b: BrokerProcess) =>
  KiteqConnection.connect({ host: b.host, port: b.port, groupId: "p", heartbeatMs: 0 });

/** The `delivered` and `acked` state changes of a group's history, sorted. */
const pushesAndAcks = async (groupId: string): Promise<string[]> => {
  const { rows } = await db.pool.query<{ kind: string }>(
    `SELECT x.kind::text FROM message_events e
       CROSS JOIN LATERAL (SELECT e.kind UNION ALL SELECT 'delivered' WHERE e.delivered_at IS NOT NULL) x(kind)
      WHERE e.group_id = $1 AND x.kind IN ('delivered', 'acked')`,
    [groupId],
  );
  return rows.map((r) => r.kind).sort();
};

it("a delivery claimed again while its ack waits to be written is not pushed again", async () => {
  broker = await startBroker(1);
  const consumer = await recordingConsumer(broker.port, "g");
  // The outage starts as the consumer handles the message: its ack cannot be written.
  consumer.conn.onMessage(async (m) => {
    consumer.received.push(m);
    if (consumer.received.length === 1) await db.pool.query("INSERT INTO injected_outage VALUES (now())");
    return true;
  });
  const producer = await connectProducer(broker);
  conns.push(consumer.conn, producer);
  const h = buildHeader({ topic: "t", messageType: "m", groupId: "p" });
  expect((await producer.publish(h, "x")).status).toBe(true);
  await waitFor(() => consumer.received.length === 1, 10_000, "the first push");
  // Past the lease (2 s, not renewed): the node's claim (polling every second) takes it again.
  await waitFor(async () => (await claimEpochOf("g")) === 2, 10_000, "the delivery claimed again");
  await new Promise((r) => setTimeout(r, 500));
  await db.pool.query("DELETE FROM injected_outage");
  await waitFor(async () => (await owedTo("g")) === 0, 15_000, "the ack written");
  await new Promise((r) => setTimeout(r, 500));
  expect(consumer.ids()).toEqual([h.messageId]);
  // One push and its ack (the claim that took it again is in the history as a takeover).
  expect(await pushesAndAcks("g")).toEqual(["acked", "delivered"]);
}, 60_000);

it("a delivery claimed again while its push awaits the consumer's answer is not pushed again", async () => {
  await broker?.kill();
  // A push outlives the lease: answered within 10 s, the lease 2 s.
  broker = await startBroker(10);
  const consumer = await recordingConsumer(broker.port, "g2");
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => {
    answer = resolve;
  });
  // The outage starts as the consumer takes the message (renewals fail: the lease lapses), and
  // the consumer answers only once the node has claimed the delivery again.
  consumer.conn.onMessage(async (m) => {
    consumer.received.push(m);
    if (consumer.received.length === 1) {
      await db.pool.query("INSERT INTO injected_outage VALUES (now())");
      await answered;
    }
    return true;
  });
  const producer = await connectProducer(broker);
  conns.push(consumer.conn, producer);
  const h = buildHeader({ topic: "t2", messageType: "m", groupId: "p" });
  expect((await producer.publish(h, "x")).status).toBe(true);
  await waitFor(() => consumer.received.length === 1, 10_000, "the first push");
  await waitFor(async () => (await claimEpochOf("g2")) === 2, 10_000, "the delivery claimed again");
  // A claim poll or two after it. Before: pushed again here, the consumer had it twice.
  await new Promise((r) => setTimeout(r, 1_500));
  await db.pool.query("DELETE FROM injected_outage");
  answer();
  await waitFor(async () => (await owedTo("g2")) === 0, 15_000, "the ack written");
  await new Promise((r) => setTimeout(r, 500));
  expect(consumer.ids()).toEqual([h.messageId]);
  expect(await pushesAndAcks("g2")).toEqual(["acked", "delivered"]);
}, 60_000);
