/**
 * Messages published in SQL (kiteq_publish) to a topic with Regx bindings: a broker's RegxRouter
 * matches them with Go's syntax (migration 0011). One delivery per group, however many of its
 * bindings match; one bad binding row does not stop the others; explain says what waits;
 * retention forgets rows of days it drops.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType } from "../../src/binding/binding.js";
import { RegxRouter } from "../../src/delivery/regx-router.js";
import { type InvalidBindingRow, listBindings } from "../../src/store/bindings.js";
import { ensurePartitions } from "../../src/store/db.js";
import { explainMessage } from "../../src/store/explain.js";
import { forgetRegxRoutingBefore } from "../../src/store/regx-routing.js";
import { callKiteqPublish } from "../../src/store/sql-publish.js";
import { bind as bindGroup, insertInvalidRegxBinding } from "../support/bindings.js";
import { waitFor } from "../support/consumers.js";
import { createTestDatabase, owedGroupsOf, type TestDatabase } from "../support/db.js";

describe("regx routing of SQL publishes", () => {
  let db: TestDatabase;
  const lines: string[] = [];
  const log = pino({ level: "info" }, { write: (l: string) => void lines.push(l) });

  const bind = (groupId: string, topic: string, messageType: string, bindType: BindType) =>
    bindGroup(db.pool, { groupId, topic, messageType, bindType });
  const publish = (topic: string, messageType: string) =>
    callKiteqPublish(db.pool, {
      topic,
      messageType,
      body: Buffer.from("x"),
      groupId: "sql",
      properties: null,
      messageId: null,
      expiresAt: null,
      deliverLimit: 5,
      deliverAt: null,
      bodyIsString: true,
    });
  const owedTo = (messageId: string) => owedGroupsOf(db.pool, messageId);
  const waiting = async () =>
    (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM regx_routing")).rows[0]!.n;

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
  });
  afterAll(async () => db.drop());

  it("one delivery per group; Go's syntax; a bad row matches nothing and stops nothing", async () => {
    // g-both: a Direct binding and a Regx one that both match "order-created".
    await bind("g-both", "orders", "order-created", BindType.Direct);
    await bind("g-both", "orders", "^order-", BindType.Regx);
    // Go's syntax PostgreSQL reads otherwise: a named group, and \b (a backspace there).
    await bind("g-go", "orders", "(?P<kind>order)\\b", BindType.Regx);
    await bind("g-none", "orders", "^refund$", BindType.Regx);
    // A row no broker would write (Go refuses the pattern): hand-edited.
    await insertInvalidRegxBinding(db.pool, "g-bad", "orders");

    const invalid: InvalidBindingRow[] = [];
    const all = await listBindings(db.pool, undefined, (row) => invalid.push(row));
    expect(all.map((b) => b.groupId).sort()).toEqual(["g-both", "g-both", "g-go", "g-none"]);
    expect(invalid).toMatchObject([{ groupId: "g-bad", topic: "orders", messageType: "(unclosed" }]);

    const r = await publish("orders", "order-created");
    expect(r.owedGroups).toBe(1); // g-both's Direct binding, in the caller's transaction
    expect(await owedTo(r.messageId)).toEqual(["g-both"]);
    const waitingWords = await explainMessage(db.pool, r.messageId, new Date());
    expect(waitingWords!.groups.find((g) => g.groupId === "g-go")!.description).toContain(
      "waiting for a broker to match its Regx binding",
    );
    // g-both acks before the router runs: its delivery is gone, and must not come back.
    await db.pool.query(
      "DELETE FROM deliveries d USING message_ids i WHERE i.message_pk = d.message_pk AND i.message_id = $1",
      [r.messageId],
    );

    const router = new RegxRouter([db.pool], log);
    router.start();
    try {
      await waitFor(async () => (await waiting()) === 0, 10_000, "the routing row taken");
      expect(await owedTo(r.messageId)).toEqual(["g-go"]);
      expect(router.counters).toEqual({ messages: 1, deliveries: 1 });
      expect(lines.some((l) => l.includes("KQ_BINDING_INVALID") && l.includes("g-bad"))).toBe(true);

      // Woken by the publish's notification path too: a second message is routed (here by the
      // router's own check, which runs every second).
      const second = await publish("orders", "order-shipped");
      expect(second.owedGroups).toBe(0);
      await waitFor(async () => (await owedTo(second.messageId)).length === 2, 10_000, "routed");
      expect(await owedTo(second.messageId)).toEqual(["g-both", "g-go"]);
    } finally {
      await router.stop();
    }

    // A topic without Regx bindings queues nothing.
    await bind("g-fan", "plain", "*", BindType.Fanout);
    const plain = await publish("plain", "t");
    expect(plain.owedGroups).toBe(1);
    expect(await waiting()).toBe(0);
  });

  it("retention forgets rows of the days it drops, and only those", async () => {
    await bind("g-ret", "ret", "^x", BindType.Regx);
    const a = await publish("ret", "x1");
    const b = await publish("ret", "x2");
    await db.pool.query(
      `UPDATE regx_routing r SET message_stored_at = now() - interval '3 days'
         FROM message_ids i WHERE i.message_pk = r.message_pk AND i.message_id = $1`,
      [a.messageId],
    );
    const cutoff = new Date(Date.now() - 2 * 86_400_000);
    expect(await forgetRegxRoutingBefore(db.pool, cutoff, 1)).toBe(1);
    const { rows } = await db.pool.query<{ message_id: string }>(
      "SELECT i.message_id FROM regx_routing r JOIN message_ids i ON i.message_pk = r.message_pk",
    );
    expect(rows.map((x) => x.message_id)).toEqual([b.messageId]);
  });
});
