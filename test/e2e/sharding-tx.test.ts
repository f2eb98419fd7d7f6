/**
 * Two-phase commit on a store of three shards: a message's pending transaction lives in its shard,
 * TX_ACKs are applied there, and each shard's checker asks the producer about its own silent
 * messages. Commits are delivered once, rollbacks never, every story is in the message's shard.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType, createBinding } from "../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { shardOf } from "../../src/store/shard-hash.js";
import { shardedMessageHistory } from "../../src/store/sharded-history.js";
import { type BrokerProcess, FAST_TX_CHECKS, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

describe("e2e: two-phase commit over three shards", () => {
  const shards: TestDatabase[] = [];
  let broker: BrokerProcess | undefined;
  const conns: KiteqConnection[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 3; i++) shards.push(await createTestDatabase());
    await upsertBinding(
      shards[0]!.pool,
      createBinding({
        groupId: "g",
        topic: "tx",
        messageType: "*",
        bindType: BindType.Fanout,
        watermark: 1000,
        persistent: true,
      }),
      "cli",
      new Date(),
    );
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    await broker?.stop();
    for (const s of shards) await s.drop();
  });

  it("commits, rollbacks and check-backs in every shard", async () => {
    broker = await startBrokerProcess([
      "--db",
      shards.map((s) => s.url).join(" "),
      ...FAST_TX_CHECKS,
      "--recover-seconds",
      "1",
      "--recieve-permits-per-second",
      "0",
    ]);
    const consumer = await recordingConsumer(broker.port, "g");
    const producer = await KiteqConnection.connect({
      host: broker.host,
      port: broker.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    conns.push(consumer.conn, producer);
    const checked: string[] = [];
    // Silent messages are committed when asked; the others decided by their own TX_ACK.
    producer.onTxCheck((h) => {
      checked.push(h.messageId);
      return 1;
    });
    const committed: string[] = [];
    const rolledBack: string[] = [];
    const silent: string[] = [];
    const uncommitted = () => buildHeader({ topic: "tx", messageType: "order", groupId: "p", commit: false });
    for (let i = 0; i < 12; i++) {
      const r = await producer.sendTx(uncommitted(), `order ${i}`, async () => i % 2 === 0);
      (r.committed ? committed : rolledBack).push(r.messageId);
      const h = uncommitted();
      expect((await producer.publish(h, `silent ${i}`)).status).toBe(true);
      silent.push(h.messageId);
    }
    const all = [...committed, ...rolledBack, ...silent];
    expect(new Set(all.map((id) => shardOf(id, 3))).size).toBe(3);
    const pools = shards.map((s) => s.pool);
    await waitFor(
      () => [...committed, ...silent].every((id) => consumer.ids().includes(id)),
      20_000,
      "commits and checked messages delivered",
    );
    await new Promise((r) => setTimeout(r, 1500));
    // A rollback's pending row goes in the statement that writes its history row, when the broker
    // gets to the TX_ACK (short of CPU: seconds later).
    await waitFor(
      async () => {
        for (const s of shards) {
          const { rows } = await s.pool.query("SELECT count(*)::int AS n FROM pending_transactions");
          if (rows[0].n !== 0) return false;
        }
        return true;
      },
      15_000,
      "every transaction decided",
    );
    for (const id of [...committed, ...silent])
      expect(consumer.ids().filter((x) => x === id)).toHaveLength(1);
    for (const id of rolledBack) expect(consumer.ids()).not.toContain(id);
    for (const id of silent) expect(checked).toContain(id);
    for (const id of all) {
      const h = await shardedMessageHistory(pools, id);
      expect(h).not.toBeNull();
      const story = h!.events.filter((e) => e.groupId === null).map((e) => e.kind);
      expect(story[0]).toBe("uncommitted");
      expect(story[story.length - 1]).toBe(rolledBack.includes(id) ? "rolled_back" : "committed");
      if (silent.includes(id)) expect(story).toContain("tx_checked");
      // Only in its own shard.
      for (const [i, s] of shards.entries()) {
        const { rows } = await s.pool.query("SELECT 1 FROM message_ids WHERE message_id = $1", [id]);
        expect(rows.length).toBe(i === shardOf(id, 3) ? 1 : 0);
      }
    }
    for (const s of shards) {
      const { rows } = await s.pool.query("SELECT count(*)::int AS n FROM pending_transactions");
      expect(rows[0].n).toBe(0);
    }
  }, 60_000);
});
