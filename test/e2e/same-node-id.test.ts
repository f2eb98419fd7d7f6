/**
 * A second node started by mistake with a running node's id (the default id is its --bind
 * address) is refused with one line, and the running node is left as it was. Before, the second
 * node declared the running one's claims dead (free for any node to take: duplicates) and marked
 * its row stopped, even though it then failed to listen on the taken port; the console and
 * /metrics showed the running node as stopped until it restarted.
 */
import { execFile } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/store/embedded.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { cliArgs, ROOT } from "../support/built-src.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

describe("e2e: two nodes with one node id", () => {
  let db: TestDatabase;
  let running: BrokerProcess;

  beforeAll(async () => {
    db = await createTestDatabase();
    running = await startBrokerProcess(["--db", db.url]);
  });
  afterAll(async () => {
    await running?.stop();
    await db?.drop();
  });

  it("the second is refused with one line; the running node's row and claims are untouched", async () => {
    const nodeId = `127.0.0.1:${running.port}`;
    const before = await db.pool.query("SELECT claimer FROM nodes WHERE node_id = $1", [nodeId]);
    const claimer = before.rows[0]?.claimer as string;
    expect(claimer).toMatch(new RegExp(`^${nodeId}/`));
    const ownPort = await freePort();
    const second = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        // Its own port (the same --bind is refused earlier, as an address in use), the same node id.
        cliArgs([
          "serve",
          "--db",
          db.url,
          "--bind",
          `127.0.0.1:${ownPort}`,
          "--node-id",
          nodeId,
          "--admin",
          "0",
        ]),
        { cwd: ROOT, timeout: 60_000, env: { ...process.env, VITEST: undefined } },
        (err, _stdout, stderr) =>
          resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : null, stderr }),
      );
    });
    expect(second.code).not.toBe(0);
    const lines = second.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(
      `KQ_CONFIG_INVALID: node id ${nodeId} is in use by a running node (its run ${claimer}`,
    );
    const after = await db.pool.query("SELECT claimer, stopped_at FROM nodes WHERE node_id = $1", [nodeId]);
    expect(after.rows).toEqual([{ claimer, stopped_at: null }]);
    const dead = await db.pool.query("SELECT 1 FROM dead_claimers WHERE claimer = $1", [claimer]);
    expect(dead.rows).toHaveLength(0);
    expect(running.child.exitCode).toBeNull();
  });
});
