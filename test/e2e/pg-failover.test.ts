/**
 * Primary failover with real servers: a primary and a streaming standby (the system's PostgreSQL,
 * Debian's postgresql-15), and a broker process whose --db names both hosts with
 * target_session_attrs=read-write. Producers publish without pause; the primary is stopped and the
 * standby promoted. Publishing must be acked again within 5 s of the promotion, every publish must
 * be answered (false with a reason during the outage: no hang, no crash), and every acked message
 * must reach the consumer (duplicates allowed, counted and reported).
 *
 * Two ways the primary goes: `pg_ctl stop -m fast` with an asynchronous standby (a clean stop ships
 * the last WAL to the standby first, as in a planned switchover or a supervisor stopping a failing
 * primary), and `-m immediate` (a crash) with a synchronous standby: with an asynchronous one, a
 * commit acknowledged just before a crash may not have reached the standby (README, "PostgreSQL
 * failover").
 *
 * Without the binaries (and without root to install them) the file says so on one line and skips.
 */
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createBinding } from "../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { silentLogger } from "../../src/log.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { createPool, runMigrations } from "../../src/store/db.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { type RecordingConsumer, recordingConsumer, waitFor } from "../support/consumers.js";
import { type ReplicationPair, startReplicationPair, systemPostgresBin } from "../support/pg-replication.js";

const bin = systemPostgresBin();
if (bin === null) {
  console.log(
    "pg-failover: skipped, no PostgreSQL with pg_basebackup under /usr/lib/postgresql (apt-get install postgresql-15)",
  );
}

const TOPIC = "failover";
const GROUP = "fo-consumer";
const PRODUCERS = 4;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Answer {
  messageId: string;
  sentAt: number;
  answeredAt: number;
  status: boolean | "no answer";
  feedback: string;
}

describe.skipIf(bin === null)("e2e: PostgreSQL primary failover (multi-host --db)", () => {
  const pairs: ReplicationPair[] = [];
  const brokers: BrokerProcess[] = [];
  const conns: KiteqConnection[] = [];
  afterAll(async () => {
    for (const c of conns) c.close();
    for (const b of brokers) await b.kill();
    for (const p of pairs) await p.destroy();
  });

  it("fast stop of the primary (asynchronous standby): publishing resumes within 5 s of the promotion, every acked message is delivered", async () => {
    await failover("fast", false);
  }, 45_000);

  it("crash of the primary (immediate stop, synchronous standby): the same", async () => {
    await failover("immediate", true);
  }, 45_000);

  async function failover(stopMode: "fast" | "immediate", synchronous: boolean): Promise<void> {
    const pair = await startReplicationPair(bin as string, { synchronous });
    pairs.push(pair);
    const admin = new pg.Client({
      host: "127.0.0.1",
      port: pair.primary.port,
      user: "postgres",
      database: "postgres",
    });
    await admin.connect();
    await admin.query("CREATE DATABASE kiteq");
    await admin.end();
    const url = pair.url("kiteq");
    // The test's own pool goes through the same multi-host connection code as the broker's.
    const pool = createPool(url, { max: 1 });
    await runMigrations(pool, silentLogger);
    const binding = createBinding({
      groupId: GROUP,
      topic: TOPIC,
      messageType: "m",
      bindType: 0,
      watermark: 6000,
      persistent: true,
    });
    await upsertBinding(pool, binding, "cli", new Date());
    await pool.end();

    const broker = await startBrokerProcess([
      "--db",
      url,
      "--node-id",
      "failover-node",
      "--recover-seconds",
      "1",
      "--lease-seconds",
      "5",
      "--delivery-seconds",
      "2",
      "--recieve-permits-per-second",
      "0",
    ]);
    brokers.push(broker);
    const consumer: RecordingConsumer = await recordingConsumer(broker.port, GROUP);
    conns.push(consumer.conn);
    const producers = await Promise.all(
      Array.from({ length: PRODUCERS }, () =>
        KiteqConnection.connect({ host: "127.0.0.1", port: broker.port, groupId: "fo-p", heartbeatMs: 0 }),
      ),
    );
    conns.push(...producers);

    const answers: Answer[] = [];
    let publishing = true;
    const publishLoop = async (conn: KiteqConnection) => {
      while (publishing) {
        const header = buildHeader({ topic: TOPIC, messageType: "m", groupId: "fo-p" });
        const sentAt = Date.now();
        try {
          const ack = await conn.publish(header, `body-${header.messageId}`);
          answers.push({
            messageId: header.messageId,
            sentAt,
            answeredAt: Date.now(),
            status: ack.status,
            feedback: ack.feedback,
          });
          if (!ack.status) await sleep(20);
        } catch (err) {
          answers.push({
            messageId: header.messageId,
            sentAt,
            answeredAt: Date.now(),
            status: "no answer",
            feedback: (err as Error).message,
          });
        }
      }
    };
    const loops = producers.map(publishLoop);
    const acked = () => answers.filter((a) => a.status === true);

    await waitFor(() => acked().length >= 300, 20_000, "300 publishes acked before the failover");
    const stoppedAt = Date.now();
    await pair.stop(pair.primary, stopMode);
    await waitFor(
      () => answers.some((a) => a.sentAt > stoppedAt && a.status === false),
      10_000,
      "publishes answered false while no primary is there",
    );
    // A short outage, then the standby is promoted.
    await sleep(500);
    const promoteIssuedAt = Date.now();
    await pair.promote(pair.standby);
    const promotedAt = Date.now();
    await waitFor(
      () => answers.some((a) => a.answeredAt >= promotedAt && a.status === true),
      10_000,
      "a publish acked after the promotion",
    );
    const resumedAt = Math.min(
      ...answers.filter((a) => a.answeredAt >= promotedAt && a.status === true).map((a) => a.answeredAt),
    );
    // Keep publishing on the new primary for a moment, then stop.
    await sleep(1000);
    publishing = false;
    await Promise.all(loops);

    const ackedIds = new Set(acked().map((a) => a.messageId));
    const refused = answers.filter((a) => a.status === false);
    const unanswered = answers.filter((a) => a.status === "no answer");
    const received = () => new Set(consumer.ids());
    await waitFor(
      () => {
        const got = received();
        for (const id of ackedIds) if (!got.has(id)) return false;
        return true;
      },
      25_000,
      "every acked message delivered to the consumer",
    );
    const missing = [...ackedIds].filter((id) => !received().has(id));
    const deliveries = consumer.ids().filter((id) => ackedIds.has(id)).length;
    const duplicates = deliveries - ackedIds.size;
    const ackedBefore = [...acked()].filter((a) => a.answeredAt < stoppedAt).length;
    const ackedAfter = [...acked()].filter((a) => a.answeredAt >= promotedAt).length;
    console.log(
      `pg-failover (${stopMode} stop, ${synchronous ? "synchronous" : "asynchronous"} standby): ${ackedIds.size} acked (${ackedBefore} before the stop, ${ackedAfter} after the promotion), ` +
        `${refused.length} answered false during the outage, ${unanswered.length} unanswered; publishing resumed ` +
        `${resumedAt - promotedAt} ms after pg_ctl promote returned (${resumedAt - promoteIssuedAt} ms after it was ` +
        `issued, outage ${promotedAt - stoppedAt} ms); ${missing.length} acked messages missing, ${duplicates} duplicate deliveries`,
    );

    expect(resumedAt - promotedAt).toBeLessThan(5000);
    expect(missing).toEqual([]);
    // Every publish was answered; refusals carry a reason.
    expect(unanswered).toEqual([]);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.feedback).not.toBe("");
    // The broker rode through on its own: still running, told where the primary went, no stack traces.
    expect(broker.child.exitCode).toBeNull();
    const logs = broker.logs;
    expect(logs.some((l) => l.msg === "database host changed (failover)")).toBe(true);
    expect(logs.some((l) => l.msg === "LISTEN connection open again")).toBe(true);
    expect(logs.some((l) => l.msg === "liveness connection open again: liveness lock held")).toBe(true);
    expect(logs.filter((l) => JSON.stringify(l).includes("    at "))).toEqual([]);
  }
});
