/**
 * Multi-host pools (store/failover.ts) against the test server: a refused host is passed over, a
 * server that turns read-only is left (its connections dropped, the host chosen again), and the
 * pool comes back once it takes writes again. The failover of a real primary to a promoted
 * standby is test/e2e/pg-failover.test.ts.
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../../src/store/db.js";
import { freePort } from "../../src/store/embedded.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

describe("store: pools on a multi-host URL", () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let url: string;
  let deadPort: number;
  let database: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    deadPort = await freePort();
    // Nothing listens on deadPort: the first host refuses every connection.
    const at = db.url.indexOf("@");
    url = `${db.url.slice(0, at + 1)}127.0.0.1:${deadPort},${db.url.slice(at + 1)}?target_session_attrs=read-write`;
    pool = createPool(url, { max: 1 });
    database = (await db.pool.query<{ d: string }>("SELECT current_database() AS d")).rows[0]?.d as string;
  });
  afterAll(async () => {
    await pool.end();
    await db.pool
      .query(`ALTER DATABASE ${database} RESET default_transaction_read_only`)
      .catch(() => undefined);
    await db.drop();
  });

  it("passes over a host that refuses connections", async () => {
    const { rows } = await pool.query<{ d: string }>("SELECT current_database() AS d");
    expect(rows[0]?.d).toBe(database);
  });

  it("drops a connection whose server refused a write as read-only (25006)", async () => {
    const client = await pool.connect();
    const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid;
    await client.query("SET default_transaction_read_only = on");
    await expect(client.query("CREATE TABLE never_made (x int)")).rejects.toMatchObject({ code: "25006" });
    client.release();
    await new Promise((r) => setTimeout(r, 50));
    // A new connection, to a server chosen again.
    const again = await pool.query<{ pid: number; ro: string }>(
      "SELECT pg_backend_pid() AS pid, current_setting('transaction_read_only') AS ro",
    );
    expect(again.rows[0]?.pid).not.toBe(pid);
    expect(again.rows[0]?.ro).toBe("off");
  });

  it("refuses new connections while no host takes writes, naming each, and recovers after", async () => {
    await db.pool.query(`ALTER DATABASE ${database} SET default_transaction_read_only = on`);
    const fresh = createPool(url, { max: 1 });
    const attempt = () =>
      fresh.query("SELECT 1").then(
        () => "connected",
        (err: Error) => err.message,
      );
    try {
      // The chosen server is checked on arrival: read-only now, so it is chosen no more...
      expect(await attempt()).toMatch(/ is a primary in read-only mode, not target_session_attrs=read-write/);
      // ...and the next connection tries every host, none of which takes writes.
      expect(await attempt()).toMatch(
        new RegExp(
          `^no server with target_session_attrs=read-write among 127\\.0\\.0\\.1:${deadPort} \\(connect ECONNREFUSED [^)]*\\), .* \\(a primary in read-only mode\\)$`,
        ),
      );
    } finally {
      await fresh.end();
    }
    await db.pool.query(`ALTER DATABASE ${database} RESET default_transaction_read_only`);
    await new Promise((r) => setTimeout(r, 250));
    const after = createPool(url, { max: 1 });
    try {
      const { rows } = await after.query<{ ro: string }>(
        "SELECT current_setting('transaction_read_only') AS ro",
      );
      expect(rows[0]?.ro).toBe("off");
    } finally {
      await after.end();
    }
  });
});
