/**
 * The SDK off the happy path, against one broker process (delivery timeout 2 s): close() after a
 * `break` out of for-await and a second close(); handlers that never end (waiting pushes still
 * answered at maxWaitMs); a redelivery of a message whose handler still runs (not run twice at
 * once); maxPending 0; a body over KiteQ's packet limit; a messageId of your own in upper case.
 * Each case failed on the code before.
 */
import { spawn } from "node:child_process";
import { pathToFileURL } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType } from "../../src/binding/binding.js";
import { createConsumer, createProducer, ErrorCode, type KiteqError } from "../../src/client/index.js";
import { messageHistory } from "../../src/store/history.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { builtEntry } from "../support/built-src.js";
import { waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const GROUPS = [
  "g-break",
  "g-stuck",
  "g-redeliver",
  "g-nopending",
  "g-throw",
  "g-case",
  "g-restart",
  "g-slow",
] as const;
const topicOf = (group: string) => group.slice(2);

describe("e2e: SDK edges", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  let registry: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    for (const groupId of GROUPS) {
      await bind(db.pool, { groupId, topic: topicOf(groupId), messageType: "*", bindType: BindType.Fanout });
    }
    broker = await startBrokerProcess([
      "--db",
      db.url,
      "--delivery-seconds",
      "2",
      "--recover-seconds",
      "1",
      "--redelivery",
      "1:1",
      "--recieve-permits-per-second",
      "0",
    ]);
    registry = `${broker.host}:${broker.port}`;
  });
  afterAll(async () => {
    await broker?.stop();
    await db?.drop();
  });

  const producerFor = (topic: string) => createProducer({ registry, groupId: `p-${topic}`, topics: [topic] });

  it("break out of for-await: close(), and a second close(), settle within closeTimeoutMs", async () => {
    const consumer = await createConsumer({
      registry,
      groupId: "g-break",
      bindings: [],
      closeTimeoutMs: 1_000,
    });
    const producer = await producerFor("break");
    await producer.send({ topic: "break", messageType: "m", body: "unanswered" });
    for await (const m of consumer) {
      expect(m.text()).toBe("unanswered");
      break; // unanswered: close() waits closeTimeoutMs for it, no longer
    }
    const started = Date.now();
    await Promise.all([consumer.close(), consumer.close()]);
    // Before: the user's close() (the iterator's return() had made the first) never settled.
    expect(Date.now() - started).toBeLessThan(5_000);
    await producer.close();
  });

  it("handlers that never end: the pushes waiting behind them are still answered at maxWaitMs", async () => {
    const consumer = await createConsumer({
      registry,
      groupId: "g-stuck",
      bindings: [],
      concurrency: 1,
      maxWaitMs: 300,
      closeTimeoutMs: 500,
      handler: () => new Promise<boolean>(() => undefined),
    });
    const producer = await producerFor("stuck");
    for (let i = 0; i < 4; i++) await producer.send({ topic: "stuck", messageType: "m", body: `m${i}` });
    await waitFor(
      () => consumer.active === 1 && consumer.pending > 0,
      15_000,
      "pushes waiting behind the stuck handler",
    );
    // Before: the waiting pushes stayed (pump answers them only when a slot frees), and each
    // redelivery queued another: `pending` never went back to 0.
    await waitFor(() => consumer.pending === 0, 15_000, "the waiting pushes to be answered false");
    await consumer.close();
    await producer.close();
  });

  it("a redelivery of a message whose handler still runs is not run a second time at once, and gets its outcome", async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const consumer = await createConsumer({
      registry,
      groupId: "g-redeliver",
      bindings: [],
      handler: async () => {
        runs++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        // Longer than the broker's delivery timeout (2 s) plus its retry delay (1 s).
        if (runs === 1) await new Promise((r) => setTimeout(r, 4_000));
        running--;
        return true;
      },
    });
    const producer = await producerFor("redeliver");
    // deliverLimit 2: refusing the redelivery (as a first fix did) would dead-letter the message
    // while its first run still worked, and that run's late ack would then find nothing to end.
    const { messageId } = await producer.send({
      topic: "redeliver",
      messageType: "m",
      body: "slow",
      deliverLimit: 2,
    });
    const delivered = async () =>
      ((await messageHistory(db.pool, messageId))?.events ?? []).filter(
        (e) => e.groupId === "g-redeliver" && (e.kind === "delivered" || e.kind === "acked"),
      );
    // The broker pushed it again while the first run went on (the case under test).
    await waitFor(
      async () => (await delivered()).some((e) => (e.attempt ?? 0) >= 2),
      15_000,
      "a second push",
    );
    await waitFor(
      async () => (await messageHistory(db.pool, messageId))?.events.some((e) => e.kind === "acked") ?? false,
      20_000,
      "the ack",
    );
    // Before: 2 (the redelivery ran beside the first run).
    expect(maxRunning).toBe(1);
    const kinds = (await messageHistory(db.pool, messageId))?.events.map((e) => e.kind) ?? [];
    expect(kinds).not.toContain("dead_lettered");
    await consumer.close();
    await producer.close();
  });

  it("maxPending 0: pushes still fill free handlers (none wait)", async () => {
    const handled = new Set<string>();
    const consumer = await createConsumer({
      registry,
      groupId: "g-nopending",
      bindings: [],
      concurrency: 4,
      maxPending: 0,
      handler: (m) => {
        handled.add(m.messageId);
        return true;
      },
    });
    const producer = await producerFor("nopending");
    for (let i = 0; i < 10; i++) await producer.send({ topic: "nopending", messageType: "m", body: `m${i}` });
    // Before: every push answered false, nothing ever handled.
    await waitFor(() => handled.size === 10, 15_000, "10 messages handled");
    await consumer.close();
    await producer.close();
  });

  it("a messageId of your own in upper case: send() returns it as stored and delivered (lower case)", async () => {
    const seen: string[] = [];
    const consumer = await createConsumer({
      registry,
      groupId: "g-case",
      bindings: [],
      handler: (m) => {
        seen.push(m.messageId);
        return true;
      },
    });
    const producer = await producerFor("case");
    const own = "0123456789ABCDEF0123456789ABCDEF";
    const sent = await producer.send({ topic: "case", messageType: "m", body: "x", messageId: own });
    // Before: "0123...ABCDEF" as given, while the history and the consumer said "0123...abcdef".
    expect(sent.messageId).toBe(own.toLowerCase());
    await waitFor(() => seen.length === 1, 15_000, "the message handled");
    expect(seen).toEqual([sent.messageId]);
    expect((await messageHistory(db.pool, sent.messageId))?.messageId).toBe(sent.messageId);
    await consumer.close();
    await producer.close();
  });

  it("sendTx whose local transaction answers neither commit nor rollback: rolled back and rejected, not rolled back in silence", async () => {
    const producer = await producerFor("break");
    const err = (await producer
      .sendTx({ topic: "break", messageType: "tx", body: "typo" }, async () => "comit" as unknown as "commit")
      .catch((e: unknown) => e)) as KiteqError;
    expect(err.code).toBe(ErrorCode.ConfigInvalid);
    expect(err.message).toBe(
      'the local transaction returned "comit", not "commit" or "rollback": rolled back',
    );
    const messageId = String(err.context.messageId);
    await waitFor(
      async () =>
        (await messageHistory(db.pool, messageId))?.events.some((e) => e.kind === "rolled_back") ?? false,
      15_000,
      "the rollback",
    );
    await producer.close();
  });

  it("producer.close() during a long local transaction returns after sendTimeoutMs, not after the transaction", async () => {
    const producer = await createProducer({
      registry,
      groupId: "p-long",
      topics: ["break"],
      sendTimeoutMs: 1_000,
    });
    const tx = producer
      .sendTx({ topic: "break", messageType: "tx", body: "long" }, async () => {
        await new Promise((r) => setTimeout(r, 6_000));
        return "rollback" as const;
      })
      .catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    await producer.close();
    // Before: 6 s (the local transaction's time).
    expect(Date.now() - started).toBeLessThan(3_000);
    await tx;
  });

  it("a handler that throws: the nack's reason in the history is the error, not 'consumer answered false'", async () => {
    const logged: { msg?: string; err?: { message?: string; stack?: string } }[] = [];
    const consumer = await createConsumer({
      registry,
      groupId: "g-throw",
      bindings: [],
      logger: pino({ level: "warn" }, { write: (line: string) => void logged.push(JSON.parse(line)) }),
      handler: function chargeCard() {
        throw new Error("payment service down");
      },
    });
    const producer = await producerFor("throw");
    const { messageId } = await producer.send({
      topic: "throw",
      messageType: "m",
      body: "x",
      deliverLimit: 1,
    });
    await waitFor(
      async () =>
        (await messageHistory(db.pool, messageId))?.events.some((e) => e.kind === "nacked") ?? false,
      15_000,
      "the nack",
    );
    const nack = (await messageHistory(db.pool, messageId))!.events.find((e) => e.kind === "nacked");
    expect(nack?.detail).toBe("consumer answered false: handler threw: Error: payment service down");
    // The application's log has the error with its stack (before: the string "Error: payment service down").
    const failure = logged.find((l) => l.msg === "handler failed; nacked");
    expect(failure?.err?.message).toBe("payment service down");
    expect(failure?.err?.stack).toMatch(/at chargeCard \(/);
    await Promise.all([consumer.close(), producer.close()]);
  });

  it("a body over KiteQ's packet limit: KQ_MESSAGE_INVALID at once, not retried until sendTimeoutMs", async () => {
    const producer = await producerFor("break");
    const started = Date.now();
    const err = (await producer
      .send({ topic: "break", messageType: "big", body: "x".repeat(3 * 1024 * 1024) })
      .catch((e: unknown) => e)) as KiteqError;
    expect(err.code).toBe(ErrorCode.MessageInvalid);
    expect(err.message).toMatch(/^message too large: packet of \d+ bytes exceeds the 2097152-byte limit/);
    expect(err.context.messageId).toMatch(/^[0-9a-f]{32}$/);
    // Before: KQ_TIMEOUT after 15 s and 34 attempts.
    expect(Date.now() - started).toBeLessThan(3_000);
    await producer.close();
  });

  it("a consumer given a broker's address keeps its process up while that broker restarts", async () => {
    // Its own broker, restarted on the same port; the consumer in a process of its own, holding
    // nothing else open (as a service whose only job is consuming).
    const own = await startBrokerProcess(["--db", db.url, "--recieve-permits-per-second", "0"]);
    const address = `${own.host}:${own.port}`;
    const sdk = pathToFileURL(builtEntry("client/index.ts")).href;
    const script = `
      const { createConsumer } = await import(${JSON.stringify(sdk)});
      await createConsumer({ registry: [${JSON.stringify(address)}], groupId: "g-restart", bindings: [],
        handler: async (m) => { console.log("got " + m.body.toString()); return true; } });
      console.log("up");`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout!.on("data", (d: Buffer) => {
      output += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    let restarted: BrokerProcess | undefined;
    try {
      await waitFor(() => output.includes("up"), 20_000, "the consumer connected");
      await own.stop();
      // Before: the process exited (code 0, nothing said) as soon as the connection closed.
      const gone = await Promise.race([exited, new Promise((r) => setTimeout(() => r("running"), 2_000))]);
      expect(gone).toBe("running");
      restarted = await startBrokerProcess(["--db", db.url, "--recieve-permits-per-second", "0"], {
        port: own.port,
      });
      const producer = await createProducer({ registry: address, groupId: "p-restart", topics: ["restart"] });
      await producer.send({ topic: "restart", messageType: "m", body: "after the restart" });
      await producer.close();
      await waitFor(() => output.includes("got after the restart"), 20_000, "the message after the restart");
    } finally {
      child.kill("SIGKILL");
      await exited;
      await restarted?.stop();
    }
  }, 90_000);

  it("a slow but healthy consumer runs every message: none answered false unrun, none dead-lettered", async () => {
    // 4 handlers of 20 ms: about 200 a second. Before, the broker pushed the group's whole window
    // (2,000: 10 s of work) at once; what waited past maxWaitMs (4 s) was answered false unrun,
    // each an attempt, and at deliverLimit 2 dead-lettered without any handler running it.
    const producer = await producerFor("slow");
    const sent: string[] = [];
    for (let i = 0; i < 2_000; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, () =>
          producer.send({ topic: "slow", messageType: "m", body: "x", deliverLimit: 2 }),
        ),
      );
      sent.push(...batch.map((r) => r.messageId));
    }
    await producer.close();
    const ran = new Set<string>();
    const consumer = await createConsumer({
      registry,
      groupId: "g-slow",
      bindings: [],
      concurrency: 4,
      handler: async (m) => {
        await new Promise((r) => setTimeout(r, 20));
        ran.add(m.messageId);
        return true;
      },
    });
    try {
      await waitFor(() => ran.size === sent.length, 60_000, "every message run");
      const { rows } = await db.pool.query<{ kind: string; n: number }>(
        `SELECT kind::text, count(*)::int AS n FROM message_events WHERE group_id = 'g-slow' GROUP BY kind`,
      );
      const counts = Object.fromEntries(rows.map((r) => [r.kind, r.n]));
      expect(counts.dead_lettered ?? 0).toBe(0);
      expect(counts.nacked ?? 0).toBe(0);
    } finally {
      await consumer.close();
    }
  }, 120_000);
});
