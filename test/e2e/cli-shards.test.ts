/**
 * The CLI on a sharded store (a helper's walkthrough of shards under faults; each case failed on
 * the code before):
 * - URLs in another order than the brokers': `history` said "no message" and `bind add` reported
 *   a binding written into shard 1, which no broker reads. Now refused, naming the shard.
 * - one shard down: `history` of a message in a shard that answers failed as a whole ("PostgreSQL
 *   at ... unreachable", no shard named). Now it answers; a read that needs the shard that is down
 *   names it; a write is refused naming it.
 * - one shard hung (its server paused: connections accepted, never answered): every command waited
 *   11 s for it. Now 3 s, as a broker waits for a shard.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensurePartitions } from "../../src/store/db.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { shardOf } from "../../src/store/shard-hash.js";
import { shardLabel, verifyShardList } from "../../src/store/shards.js";
import { runCli } from "../support/built-src.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const cli = (args: string[]) => runCli([...args, "--admin", "-1"]);

describe("e2e: the CLI on a sharded store", () => {
  const shards: TestDatabase[] = [];
  /** A message stored in each shard (index = shard). */
  const ids: (string | undefined)[] = [undefined, undefined];

  beforeAll(async () => {
    for (let i = 0; i < 2; i++) shards.push(await createTestDatabase());
    const pools = shards.map((s) => s.pool);
    // Recorded as a broker's first start does.
    await verifyShardList(
      pools,
      shards.map((s) => shardLabel(s.url)),
    );
    const now = new Date();
    while (ids.includes(undefined)) {
      const r = publishRecord(now, ["g"]);
      const shard = shardOf(r.messageId, 2);
      if (ids[shard] !== undefined) continue;
      ids[shard] = r.messageId;
      await ensurePartitions(pools[shard]!, now);
      await insertPublishBatch(pools[shard]!, [r], {
        now,
        nodeId: "t",
        leaseUntil: now,
        firstTxCheckAt: now,
      });
    }
  });
  afterAll(async () => {
    for (const s of shards) await s.drop();
  });

  it("refuses URLs in another order than the store's, naming the shard, and writes nothing", async () => {
    const swapped = `${shards[1]!.url} ${shards[0]!.url}`;
    const read = await cli(["history", ids[0]!, "--db", swapped]);
    // Before: exit 0, "no message ... in the history".
    expect(read.code).not.toBe(0);
    expect(read.stderr).toMatch(/shard 0 \(.*\) differs from the list recorded at creation: it is shard 1/);
    const write = await cli([
      "bind",
      "add",
      "--group",
      "g2",
      "--topic",
      "t",
      "--message-type",
      "m",
      "--db",
      swapped,
    ]);
    // Before: exit 0, "bound group g2", the row written into shard 1.
    expect(write.code).not.toBe(0);
    expect(write.stderr).toMatch(/differs from the list recorded at creation/);
    const { rows } = await shards[1]!.pool.query("SELECT 1 FROM bindings WHERE group_id = 'g2'");
    expect(rows).toHaveLength(0);
    const one = await cli(["history", ids[0]!, "--db", shards[0]!.url]);
    expect(one.code).not.toBe(0);
    expect(one.stderr).toMatch(/created with 2 shards and this command was given 1 database URL/);
  });

  it("with a shard down, reads what the others hold and names the shard it could not read", async () => {
    // Shard 1's server down: its URL on a port nothing listens on.
    const downUrl = shards[1]!.url.replace(/:\d+\//, ":1/");
    const db = `${shards[0]!.url} ${downUrl}`;
    const healthy = await cli(["history", ids[0]!, "--db", db]);
    // Before: exit 1, "PostgreSQL at 127.0.0.1:1 unreachable", whichever shard the message is in.
    expect(healthy.code, healthy.stderr).toBe(0);
    expect(healthy.stdout).toContain(`message ${ids[0]}`);
    expect(healthy.stderr).toMatch(/shard 1 \(.*:1\/\w+\) is down: .*reading the other shards/);
    const unreadable = await cli(["history", ids[1]!, "--db", db]);
    expect(unreadable.code).toBe(1);
    expect(unreadable.stderr).toMatch(
      /KQ_STORE_FAILED: shard 1 \(.*:1\/\w+\) is down: .*this read needs it, the other shards answered/,
    );
    expect(unreadable.stderr).not.toMatch(/\n\s+at /);
    const write = await cli([
      "bind",
      "add",
      "--group",
      "g3",
      "--topic",
      "t",
      "--message-type",
      "m",
      "--db",
      db,
    ]);
    expect(write.code).toBe(1);
    expect(write.stderr).toMatch(
      /shard 1 \(.*\) is down: .*this command writes, and runs only with every shard up/,
    );
  });

  it("with a shard that hangs, reads the others after 3 s, not 11", async () => {
    // Shard 1's server paused: the kernel accepts its connections, nothing ever answers.
    const held: net.Socket[] = [];
    const hung = net.createServer((s) => held.push(s));
    await new Promise<void>((r) => hung.listen(0, "127.0.0.1", r));
    try {
      const port = (hung.address() as net.AddressInfo).port;
      const db = `${shards[0]!.url} postgres://postgres@127.0.0.1:${port}/kiteq`;
      const started = Date.now();
      const healthy = await cli(["history", ids[0]!, "--db", db]);
      const took = Date.now() - started;
      expect(healthy.code, healthy.stderr).toBe(0);
      expect(healthy.stdout).toContain(`message ${ids[0]}`);
      expect(healthy.stderr).toMatch(/shard 1 \(.*\) is down: .*reading the other shards/);
      // 3 s for the shard, and the CLI's own start (about 1 s here).
      expect(took).toBeLessThan(7_000);
    } finally {
      for (const s of held) s.destroy();
      hung.close();
    }
  });
});
