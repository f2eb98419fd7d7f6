/**
 * Liveness off the happy path, with broker processes on one PostgreSQL (static registry):
 * - a node whose liveness connection is terminated takes its lock again within a moment; it is
 *   not left declared dead (before: declared at once, and listed dead for as long as it ran, its
 *   claims free to take for a lease);
 * - a maintenance leader that hangs (SIGSTOP: it keeps its locks) does not hold up the takeover
 *   of a node killed meanwhile: another node declares it (before: only the leader could, so the
 *   takeover waited for the hung leader or the lease).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

let db: TestDatabase;
const brokers: BrokerProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  for (const b of brokers) {
    b.child.kill("SIGCONT");
    await b.kill();
  }
  await db?.drop();
});

const start = async (nodeId: string) => {
  const b = await startBrokerProcess([
    "--db",
    db.url,
    "--node-id",
    nodeId,
    "--recieve-permits-per-second",
    "0",
  ]);
  brokers.push(b);
  return b;
};

const declared = async (nodeId: string): Promise<boolean> => {
  const { rows } = await db.pool.query(
    `SELECT EXISTS (SELECT 1 FROM dead_claimers d JOIN nodes n ON n.claimer = d.claimer WHERE n.node_id = $1) AS dead`,
    [nodeId],
  );
  return rows[0].dead;
};

it("a node whose liveness connection was terminated is not left declared dead", async () => {
  await start("leader-1");
  const b = await start("node-b");
  const { rowCount } = await db.pool.query(
    // This test's database only: other files' nodes may have the same names on this server.
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'kiteq-pg node-b liveness' AND datname = current_database()",
  );
  expect(rowCount).toBe(1);
  await waitFor(
    () => b.logs.some((l) => String(l.msg).includes("liveness connection open again")),
    15_000,
    "node-b took its lock again",
  );
  await new Promise((r) => setTimeout(r, 1_000));
  expect(await declared("node-b")).toBe(false);
}, 60_000);

it("a hung maintenance leader does not hold up the takeover of a killed node", async () => {
  const leader = brokers[0]!;
  const c = await start("node-c");
  leader.child.kill("SIGSTOP");
  const t0 = Date.now();
  await c.kill();
  // Well within the 30 s lease: another node declares it (after its grace of 2 s).
  await waitFor(() => declared("node-c"), 10_000, "node-c declared dead by a node that is not the leader");
  console.log(`hung leader: node-c declared dead after ${Date.now() - t0} ms`);
  leader.child.kill("SIGCONT");
}, 60_000);
