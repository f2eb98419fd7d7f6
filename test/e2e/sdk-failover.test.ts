/**
 * SDK failover: two broker nodes on one database and a real ZooKeeper (4 s sessions). An SDK
 * consumer binds through ZooKeeper; an SDK producer sends continuously (32 sends in flight);
 * the node that is storing the producer's sends is killed with kill -9. Every send that resolved
 * is delivered (0 lost), no send outlives its bound, and the consumer keeps receiving within the
 * session timeout + 1 s. Duplicates are counted and printed.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Consumer, createConsumer, createProducer, type Producer } from "../../src/client/index.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { cliArgs } from "../support/built-src.js";
import { waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { startZooKeeper, type TestZooKeeper } from "../support/zookeeper.js";

const SESSION_MS = 4_000;
const ROOT = path.resolve(import.meta.dirname, "../..");
const run = promisify(execFile);

/** `kiteq-pg ...args` as a child process; resolves with stdout (rejects on a non-zero exit). */
async function cli(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, cliArgs(args), {
    cwd: ROOT,
    timeout: 60_000,
    env: { ...process.env, VITEST: undefined, KITEQ_LOG_LEVEL: undefined },
  });
  return stdout;
}
const SEND_TIMEOUT_MS = 10_000;

describe("e2e: SDK failover on ZooKeeper", () => {
  let zk: TestZooKeeper;
  let db: TestDatabase;
  let brokers: BrokerProcess[] = [];
  let producer: Producer | undefined;
  let consumer: Consumer | undefined;

  const brokerArgs = () => [
    "--db",
    db.url,
    "--registry",
    `zk://${zk.connectString}?timeout=4s`,
    "--topics",
    "trade",
    "--recover-seconds",
    "1",
    "--lease-seconds",
    "30",
    "--recieve-permits-per-second",
    "0",
  ];

  beforeAll(async () => {
    [zk, db] = await Promise.all([startZooKeeper(), createTestDatabase()]);
    const args = [
      "--db",
      db.url,
      "--registry",
      `zk://${zk.connectString}?timeout=4s`,
      "--topics",
      "trade",
      "--recover-seconds",
      "1",
      "--lease-seconds",
      "30",
      "--recieve-permits-per-second",
      "0",
    ];
    const first = await startBrokerProcess(args);
    brokers = [first, await startBrokerProcess(args)];
  });

  afterAll(async () => {
    await producer?.close().catch(() => undefined);
    await consumer?.close().catch(() => undefined);
    await Promise.all(brokers.map((b) => b.kill()));
    await zk?.stop();
    await db?.drop();
  });

  it("CLI over ZooKeeper: consume --json binds the group and prints JSON lines of what send published", async () => {
    const registry = `zk://${zk.connectString}?timeout=4s`;
    const consuming = cli([
      "consume",
      "--registry",
      registry,
      "--topics",
      "trade",
      "--group",
      "g-cli",
      "--topic",
      "trade",
      "--message-type",
      "cli",
      "--count",
      "3",
      "--timeout",
      "40",
      "--json",
    ]);
    await waitFor(
      async () =>
        (await db.pool.query("SELECT 1 FROM bindings WHERE group_id = 'g-cli' AND source = 'zk'"))
          .rowCount === 1,
      20_000,
      "binding of the CLI consumer mirrored",
    );
    await new Promise((r) => setTimeout(r, 1_000));
    const sent = await cli([
      "send",
      "--registry",
      registry,
      "--topics",
      "trade",
      "--topic",
      "trade",
      "--message-type",
      "cli",
      "--group",
      "p-cli",
      "--count",
      "3",
      "--json",
    ]);
    const ids = sent
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { messageId: string; status: boolean }).messageId)
      .sort();
    const got = (await consuming)
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { messageId: string; topic: string; body: string });
    expect(got.map((g) => g.messageId).sort()).toEqual(ids);
    expect(got[0]!.topic).toBe("trade");
    expect(got[0]!.body).toMatch(/^kiteq-pg send #\d$/);
  });

  it("kill -9 of the producer's node: 0 lost, no send hangs, the consumer keeps receiving", async () => {
    const registry = `zk://${zk.connectString}?timeout=4s`;
    const received = new Map<string, number>();
    const arrivals: number[] = [];
    consumer = await createConsumer({
      registry,
      groupId: "g-fo",
      bindings: [{ topic: "trade", messageType: "pay", watermark: 6000 }],
      concurrency: 32,
      handler: (m) => {
        received.set(m.messageId, (received.get(m.messageId) ?? 0) + 1);
        arrivals.push(Date.now());
        return true;
      },
    });
    await waitFor(
      async () =>
        (await db.pool.query("SELECT 1 FROM bindings WHERE group_id = 'g-fo' AND source = 'zk'")).rowCount ===
        1,
      10_000,
      "binding mirrored",
    );
    await new Promise((r) => setTimeout(r, 1_000));
    // Count the producer's retries (its debug log says "send attempt failed" for each).
    let retries = 0;
    const logger = pino(
      { level: "debug" },
      {
        write: (line: string) => {
          if (line.includes('"send attempt failed"')) retries++;
        },
      },
    );
    producer = await createProducer({
      registry,
      logger,
      groupId: "p-fo",
      topics: ["trade"],
      sendTimeoutMs: SEND_TIMEOUT_MS,
      requestTimeoutMs: 2_000,
    });
    const p = producer;

    const stored: string[] = [];
    let failed = 0;
    let longest = 0;
    let stop = false;
    const loops = Array.from({ length: 32 }, async () => {
      while (!stop) {
        const started = Date.now();
        try {
          const r = await p.send({ topic: "trade", messageType: "pay", body: `t${started}` });
          stored.push(r.messageId);
        } catch {
          failed++;
        }
        longest = Math.max(longest, Date.now() - started);
      }
    });
    await waitFor(() => stored.length >= 2_000, 20_000, "sending under way");
    // Kill the node whose own producer sessions have publishes in flight: the first one.
    const victim = brokers[0]!;
    const killedAt = Date.now();
    const storedBeforeKill = stored.length;
    await victim.kill();
    await new Promise((r) => setTimeout(r, SESSION_MS + 3_000));
    stop = true;
    await Promise.all(loops);
    const storedAfterKill = stored.length - storedBeforeKill;

    // 0 lost: every send that resolved is delivered.
    await waitFor(() => stored.every((id) => received.has(id)), 30_000, "every stored message delivered");
    const duplicates = [...received.values()].reduce((n, c) => n + (c - 1), 0);
    const after = arrivals.filter((t) => t >= killedAt);
    let gap = after.length > 0 ? after[0]! - killedAt : Number.POSITIVE_INFINITY;
    for (let i = 1; i < after.length; i++) gap = Math.max(gap, after[i]! - after[i - 1]!);
    console.log(
      `failover: ${stored.length} stored (${storedAfterKill} after the kill), ${failed} sends rejected, ${retries} attempts retried on another broker, ` +
        `longest send ${longest} ms, 0 lost, ${duplicates} duplicate deliveries, longest consumer gap after kill ${gap} ms`,
    );
    expect(storedAfterKill).toBeGreaterThan(0);
    // Sends were in flight on the killed node, and were retried rather than lost or left hanging.
    expect(retries).toBeGreaterThan(0);
    expect(longest).toBeLessThanOrEqual(SEND_TIMEOUT_MS + 500);
    expect(gap).toBeLessThanOrEqual(SESSION_MS + 1_000);
    brokers = brokers.slice(1);
  });

  it("SIGSTOP of a node (frozen, connections open): sends time out there and are stored by another; none hangs", async () => {
    const p = producer!;
    // A second node again; the producer finds it under /kiteq/server/trade.
    brokers.push(await startBrokerProcess(brokerArgs()));
    await new Promise((r) => setTimeout(r, 3_000));
    const received = new Set<string>();
    await consumer!.close();
    consumer = await createConsumer({
      registry: `zk://${zk.connectString}?timeout=4s`,
      groupId: "g-fo",
      bindings: [{ topic: "trade", messageType: "pay", watermark: 6000 }],
      concurrency: 32,
      handler: (m) => {
        received.add(m.messageId);
        return true;
      },
    });
    const stored: string[] = [];
    let failed = 0;
    let longest = 0;
    let stop = false;
    const loops = Array.from({ length: 16 }, async () => {
      while (!stop) {
        const started = Date.now();
        try {
          stored.push((await p.send({ topic: "trade", messageType: "pay", body: "f" })).messageId);
        } catch {
          failed++;
        }
        longest = Math.max(longest, Date.now() - started);
      }
    });
    await waitFor(() => stored.length >= 500, 20_000, "sending under way");
    const frozen = brokers[0]!;
    frozen.child.kill("SIGSTOP");
    const storedBeforeFreeze = stored.length;
    await new Promise((r) => setTimeout(r, 3_500)); // under the 4 s session: its registration stays
    const storedDuringFreeze = stored.length - storedBeforeFreeze;
    frozen.child.kill("SIGCONT");
    await new Promise((r) => setTimeout(r, 1_000));
    stop = true;
    await Promise.all(loops);
    await waitFor(() => stored.every((id) => received.has(id)), 40_000, "every stored message delivered");
    console.log(
      `freeze: ${stored.length} stored, ${storedDuringFreeze} during the 3.5 s freeze, ${failed} rejected, longest send ${longest} ms (request timeout 2,000 ms)`,
    );
    expect(storedDuringFreeze).toBeGreaterThan(100);
    expect(failed).toBe(0);
    expect(longest).toBeLessThanOrEqual(SEND_TIMEOUT_MS + 500);
  });
});
