/**
 * A single-host database URL in libpq's keyword=value form (the README's failover section
 * documents the form): pg read it as a URL relative to a host named "base", so `--db "host=...
 * port=... dbname=..."` never connected (two hosts, or target_session_attrs, did).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../../src/store/db.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

describe("database URL forms", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  it("one host in keyword=value form connects, as the URL form does", async () => {
    const u = new URL(db.url);
    const keyword = [
      `host=${u.hostname}`,
      `port=${u.port}`,
      `dbname=${u.pathname.slice(1)}`,
      `user=${decodeURIComponent(u.username)}`,
      `password=${decodeURIComponent(u.password)}`,
    ].join(" ");
    for (const url of [keyword, db.url]) {
      const pool = createPool(url, { max: 1 });
      try {
        const { rows } = await pool.query<{ db: string }>("SELECT current_database() AS db");
        expect(rows[0]!.db).toBe(u.pathname.slice(1));
      } finally {
        await pool.end();
      }
    }
  });
});
