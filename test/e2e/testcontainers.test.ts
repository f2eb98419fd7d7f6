/**
 * The same broker against a PostgreSQL started by testcontainers, for machines with a Docker
 * engine. Where no engine answers (this project's CI machine has none), the file says so on one
 * line and its test is skipped: testcontainers is optional, the embedded PostgreSQL is the default.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";

/** Whether a container runtime answers within `ms` (a socket that accepts but never answers must not hang us). */
async function dockerAnswers(ms: number): Promise<{ ok: boolean; reason: string }> {
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    let timer: NodeJS.Timeout | undefined;
    const client = await Promise.race([
      getContainerRuntimeClient(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
    return { ok: true, reason: `container runtime ${client.info.containerRuntime.host}` };
  } catch (err) {
    return { ok: false, reason: (err as Error).message.split("\n")[0] ?? "unknown" };
  }
}

const docker = await dockerAnswers(3000);
if (!docker.ok) {
  console.log(`testcontainers: skipped, no Docker engine answers here (${docker.reason})`);
}

describe.skipIf(!docker.ok)("e2e: broker on a testcontainers PostgreSQL", () => {
  let stopContainer: (() => Promise<unknown>) | undefined;
  let broker: BrokerProcess | undefined;
  let url = "";
  beforeAll(async () => {
    const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
    const container = await new PostgreSqlContainer("postgres:18").start();
    stopContainer = () => container.stop();
    url = container.getConnectionUri();
    broker = await startBrokerProcess(["--db", url]);
  }, 300_000);
  afterAll(async () => {
    await broker?.stop();
    await stopContainer?.();
  });

  it("stores and acknowledges a publish", async () => {
    const conn = await KiteqConnection.connect({
      host: "127.0.0.1",
      port: broker!.port,
      groupId: "p",
      heartbeatMs: 0,
    });
    const ack = await conn.publish(buildHeader({ topic: "trade", messageType: "m", groupId: "p" }), "hello");
    conn.close();
    expect(ack.status).toBe(true);
    const pg = await import("pg");
    const client = new pg.default.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query("SELECT count(*)::int AS n FROM messages WHERE message_id = $1", [
      ack.messageId,
    ]);
    await client.end();
    expect(rows[0].n).toBe(1);
  });
});
