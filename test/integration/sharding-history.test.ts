/**
 * The store over three shards answers history questions exactly as one database does: the same
 * messages published (same ids, same times) into one database and into three shards by hash, then
 * every message's history and the group's history (several ranges and limits) compared. Also the
 * shard list record: created once, checked at every start, a different list refused in one line.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensurePartitions } from "../../src/store/db.js";
import { ackDeliveries, claimDueDeliveries, nackDeliveries } from "../../src/store/deliveries.js";
import { deadLetterPage } from "../../src/store/groups.js";
import { groupHistory, messageHistory } from "../../src/store/history.js";
import { insertPublishBatch, type PublishRecord } from "../../src/store/messages.js";
import { shardOf } from "../../src/store/shard-hash.js";
import {
  shardedDeadLetterPage,
  shardedGroupHistory,
  shardedMessageHistory,
} from "../../src/store/sharded-history.js";
import { ShardListMismatch, shardLabel, splitByShard, verifyShardList } from "../../src/store/shards.js";
import { builtEntry } from "../support/built-src.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const t0 = new Date("2026-11-26T10:00:00.000Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

describe("sharding: history with one shard and with three", () => {
  let single: TestDatabase;
  const shards: TestDatabase[] = [];
  const pools = () => shards.map((s) => s.pool);
  const ids: string[] = [];

  beforeAll(async () => {
    single = await createTestDatabase();
    for (let i = 0; i < 3; i++) shards.push(await createTestDatabase());
    for (const db of [single, ...shards]) await ensurePartitions(db.pool, t0);
  });
  afterAll(async () => {
    for (const db of [single, ...shards]) await db.drop();
  });

  it("records the shard list at creation and refuses another list with one line naming the shard", async () => {
    const labels = shards.map((s) => shardLabel(s.url));
    const list = await verifyShardList(pools(), labels);
    expect(list).toHaveLength(3);
    // The same list again: accepted, same uuids.
    expect(await verifyShardList(pools(), labels)).toEqual(list);
    const [a, b, c] = pools() as [never, never, never];
    const refusal = async (p: never[], l: string[]) => {
      try {
        await verifyShardList(p, l);
      } catch (err) {
        expect(err).toBeInstanceOf(ShardListMismatch);
        const message = (err as Error).message;
        expect(message).not.toContain("\n");
        return message;
      }
      throw new Error("not refused");
    };
    // Another order.
    expect(await refusal([a, c, b], [labels[0]!, labels[2]!, labels[1]!])).toMatch(
      /^shard 1 \(.*\) differs from the list recorded at creation: it is shard 2 of the store/,
    );
    // Fewer shards.
    expect(await refusal([a, b], [labels[0]!, labels[1]!])).toMatch(
      /created with 3 shards and this node was given 2 database URLs/,
    );
    // A database of another store as shard 2.
    await verifyShardList([single.pool], [shardLabel(single.url)]);
    expect(await refusal([a, b, single.pool as never], [...labels.slice(0, 2), "other"])).toMatch(
      /^shard 2 \(other\) differs .*belongs to another store \(shard 0 of 1/,
    );
    // The one-database store given as shard 0 of three.
    expect(await refusal([single.pool as never, b, c], ["single", labels[1]!, labels[2]!])).toMatch(
      /created with 1 shard and this node was given 3/,
    );
    // The label never carries credentials.
    expect(shardLabel("postgres://u:secret@h1:5432,h2:5433/kq?sslmode=require")).toBe("h1:5432,h2:5433/kq");
  });

  it("gives the same message and group histories", async () => {
    // 90 messages in 9 batches; every batch stored at one instant (ties across shards), acks and
    // nacks at instants shared by messages of different shards.
    const records: PublishRecord[][] = [];
    for (let b = 0; b < 9; b++) {
      const batch: PublishRecord[] = [];
      for (let i = 0; i < 10; i++) {
        const r = publishRecord(at(b * 100), ["g", "h"], { groupId: "producer" });
        batch.push(r);
        ids.push(r.messageId);
      }
      records.push(batch);
    }
    const counts = [0, 0, 0];
    for (const id of ids) counts[shardOf(id, 3)]!++;
    // Every shard holds some (90 random ids: at least one each, overwhelmingly likely).
    expect(counts.every((n) => n > 0)).toBe(true);

    const options = (now: Date) => ({ now, nodeId: "n1", leaseUntil: at(60_000), firstTxCheckAt: now });
    for (const [b, batch] of records.entries()) {
      await insertPublishBatch(single.pool, batch, options(at(b * 100)));
      const parts = splitByShard(batch, 3, (r) => r.messageId);
      for (const [s, part] of parts.entries()) {
        if (part.length > 0) await insertPublishBatch(shards[s]!.pool, part, options(at(b * 100)));
      }
    }
    // Group g: claim everything, ack the even messages, nack the odd ones (same instants everywhere).
    const settle = async (dbs: import("pg").Pool[]) => {
      for (const pool of dbs) {
        const claimed = await claimDueDeliveries(pool, {
          groups: ["g"],
          limits: [1000],
          now: at(5000),
          claimer: "n1/1",
          leaseUntil: at(60_000),
        });
        const byId = new Map(claimed.map((c) => [c.messageId, c]));
        const mine = ids.filter((id) => byId.has(id));
        await ackDeliveries(
          pool,
          mine
            .filter((id) => ids.indexOf(id) % 2 === 0)
            .map((id) => ({
              messagePk: byId.get(id)!.messagePk,
              groupId: "g",
              attempt: 1,
              pushedAt: at(6000),
              ackedAt: at(6000 + (ids.indexOf(id) % 7)),
            })),
          "n1",
        );
        await nackDeliveries(
          pool,
          mine
            .filter((id) => ids.indexOf(id) % 2 === 1)
            .map((id) => ({
              messagePk: byId.get(id)!.messagePk,
              groupId: "g",
              claimEpoch: byId.get(id)!.claimEpoch,
              attempt: 1,
              pushedAt: at(6000),
              failedAt: at(7000),
              nextAttemptAt: at(9000),
              deadLetter: ids.indexOf(id) % 3 === 0,
              reason: "consumer said false",
            })),
          "n1",
        );
      }
    };
    await settle([single.pool]);
    await settle(pools());

    for (const id of ids) {
      const one = await messageHistory(single.pool, id);
      expect(one).not.toBeNull();
      expect(await shardedMessageHistory(pools(), id)).toEqual(one);
      expect(await shardedMessageHistory(pools(), id.toUpperCase())).toEqual(
        await messageHistory(single.pool, id.toUpperCase()),
      );
    }
    expect(await shardedMessageHistory(pools(), "0".repeat(32))).toBeNull();

    const ranges: [Date, Date][] = [
      [at(0), at(10_000)],
      [at(5999), at(6004)],
      [at(7000), at(7001)],
    ];
    for (const group of ["g", "h", "nobody"]) {
      for (const [since, until] of ranges) {
        for (const limit of [1, 7, 45, 100, 10_000]) {
          const one = await groupHistory(single.pool, group, since, until, limit);
          expect(await shardedGroupHistory(pools(), group, since, until, limit)).toEqual(one);
        }
      }
    }
    // Dead letters: walked page by page over the shards, the same set as one database's walk.
    const filter = { groupId: "g", since: at(0), until: at(10_000) };
    const walk = async (
      page: (c: unknown) => Promise<{ items: { messageId: string; at: Date }[]; next: unknown }>,
    ) => {
      const seen: { messageId: string; at: Date }[] = [];
      let c: unknown = null;
      for (let i = 0; i < 100; i++) {
        const p = await page(c);
        seen.push(...p.items);
        if (p.next === null) break;
        c = p.next;
      }
      return seen;
    };
    const one = await walk((c) => deadLetterPage(single.pool, filter, c as never, 4));
    const three = await walk((c) => shardedDeadLetterPage(pools(), filter, c as never, 4));
    expect(one.length).toBeGreaterThan(4);
    expect(three.map((d) => d.messageId).sort()).toEqual(one.map((d) => d.messageId).sort());
    expect(new Set(three.map((d) => d.messageId)).size).toBe(three.length);
    for (let i = 1; i < three.length; i++) expect(three[i]!.at >= three[i - 1]!.at).toBe(true);

    // The comparison is not vacuous: group g has acked, nacked and dead-lettered rows.
    const kinds = new Set((await groupHistory(single.pool, "g", at(0), at(10_000))).map((e) => e.kind));
    expect([...kinds].sort()).toEqual(["acked", "dead_lettered", "delivered", "nacked"]);
  });

  it("the history CLI answers the same with one shard and with three", async () => {
    const cli = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string }>((resolve) => {
        execFile(
          process.execPath,
          [builtEntry("cli/main.ts"), "history", ...args, "--admin", "0", "--json"],
          {
            cwd: ROOT,
            timeout: 60_000,
            env: { ...process.env, VITEST: undefined, KITEQ_LOG_LEVEL: undefined },
          },
          (err, stdout) => resolve({ code: err === null ? 0 : ((err.code as number) ?? null), stdout }),
        );
      });
    const one = ["--db", single.url];
    const three = ["--db", shards.map((s) => s.url).join(" ")];
    for (const id of [ids[0]!, ids[1]!, ids[3]!]) {
      const a = await cli(["--message-id", id, ...one]);
      expect(a.code).toBe(0);
      expect(await cli(["--message-id", id, ...three])).toEqual(a);
    }
    const range = ["--group", "g", "--since", at(0).toISOString(), "--until", at(10_000).toISOString()];
    for (const limit of ["5", "100"]) {
      const a = await cli([...range, "--limit", limit, ...one]);
      expect(a.code).toBe(0);
      expect(JSON.parse(a.stdout).length).toBe(Number(limit) === 5 ? 5 : 100);
      expect(await cli([...range, "--limit", limit, ...three])).toEqual(a);
    }
  }, 90_000);
});
