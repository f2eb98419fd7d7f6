/**
 * runMigrations against a real PostgreSQL: every migration the database has not recorded is
 * applied whatever its journal `when` (drizzle's migrator skipped one stamped earlier than the
 * last applied, and the journal's `when`s run ahead of the clock); a database holding migrations
 * this code does not know is refused; a migration waiting for a table lock gives up after its
 * lock timeout, says who holds it, and is tried again, instead of queueing every statement of
 * the running nodes behind it.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KiteqError } from "../../src/errors.js";
import { silentLogger } from "../../src/log.js";
import { createPool, MIGRATIONS_DIR, runMigrations } from "../../src/store/db.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

interface Journal {
  entries: { idx: number; version: string; when: number; tag: string; breakpoints: boolean }[];
}

const journal = (folder: string): Journal =>
  JSON.parse(readFileSync(path.join(folder, "meta", "_journal.json"), "utf8")) as Journal;

/** A copy of the migrations folder with `extra` migrations appended (tag, when, SQL). */
function folderWith(extra: { tag: string; when: number; sql: string }[]): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "kiteq-migrations-"));
  cpSync(MIGRATIONS_DIR, dir, { recursive: true });
  const j = journal(dir);
  for (const m of extra) {
    writeFileSync(path.join(dir, `${m.tag}.sql`), m.sql);
    j.entries.push({ idx: j.entries.length, version: "7", when: m.when, tag: m.tag, breakpoints: true });
  }
  writeFileSync(path.join(dir, "meta", "_journal.json"), JSON.stringify(j));
  folders.push(dir);
  return dir;
}

const folders: string[] = [];
/** As drizzle-kit generate stamps a new migration: the current time, before the last `when`. */
const PROBE = {
  tag: "0099_probe",
  when: Math.max(...journal(MIGRATIONS_DIR).entries.map((e) => e.when)) - 1_000_000,
  sql: "CREATE TABLE probe_0099 (x int);",
};
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
  for (const f of folders) rmSync(f, { recursive: true, force: true });
});

describe("runMigrations", () => {
  it("the journal names each migration once (its when is its identity in the database)", () => {
    const entries = journal(MIGRATIONS_DIR).entries;
    expect(new Set(entries.map((e) => e.when)).size).toBe(entries.length);
    expect(new Set(entries.map((e) => e.tag)).size).toBe(entries.length);
  });

  it("applies a migration stamped earlier than the last one applied, and refuses a database from a newer version", async () => {
    const last = Math.max(...journal(MIGRATIONS_DIR).entries.map((e) => e.when));
    // As drizzle-kit generate stamps a new migration: the current time, before the last `when`.
    const folder = folderWith([
      { tag: "0099_probe", when: last - 1_000_000, sql: "CREATE TABLE probe_0099 (x int);" },
    ]);
    expect(await runMigrations(db.pool, silentLogger, folder)).toEqual(["0099_probe"]);
    const { rows } = await db.pool.query("SELECT to_regclass('probe_0099') IS NOT NULL AS present");
    expect(rows[0].present).toBe(true);
    expect(await runMigrations(db.pool, silentLogger, folder)).toEqual([]);
    // The code before that migration, on this database: refused, one line.
    const err = await runMigrations(db.pool, silentLogger).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KiteqError);
    expect((err as Error).message).toMatch(/1 migration this kiteq-pg does not know/);
    expect((err as Error).message).not.toContain("\n");
  });

  it("gives up a table lock after its timeout, names the session holding it, and applies once it is free", async () => {
    await db.pool.query("CREATE TABLE probe_lock (x int)");
    const folder = folderWith([
      PROBE,
      { tag: "0100_lock", when: PROBE.when + 1, sql: "ALTER TABLE probe_lock ADD COLUMN y int;" },
    ]);
    const holder = createPool(db.url, { max: 1, name: "probe-holder" });
    const c = await holder.connect();
    await c.query("BEGIN");
    await c.query("SELECT count(*) FROM probe_lock");
    const lines: string[] = [];
    const log = pino({ level: "info" }, { write: (l: string) => void lines.push(l) });
    const migrating = runMigrations(db.pool, log, folder);
    // Meanwhile the table stays readable: the migration does not hold everyone behind its wait
    // for longer than its lock timeout.
    await new Promise((r) => setTimeout(r, 6_500));
    const t0 = Date.now();
    await db.pool.query("SELECT count(*) FROM probe_lock");
    expect(Date.now() - t0).toBeLessThan(5_500);
    expect(
      lines.some((l) => l.includes("migration waits for a table lock") && l.includes("probe-holder")),
    ).toBe(true);
    await c.query("COMMIT");
    c.release();
    await holder.end();
    expect(await migrating).toEqual(["0100_lock"]);
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'probe_lock' AND column_name = 'y'",
    );
    expect(rows[0].n).toBe(1);
  }, 30_000);

  it("a stop during startup ends a migration's wait for another session's migration", async () => {
    const other = await db.pool.connect();
    await other.query("SELECT pg_advisory_lock($1)", [0x6b697465]);
    const stop = new AbortController();
    const waiting = runMigrations(db.pool, silentLogger, undefined, stop.signal).then(
      () => "finished",
      () => "stopped",
    );
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    stop.abort(new Error("stopped by SIGTERM during startup"));
    expect(await waiting).toBe("stopped");
    expect(Date.now() - t0).toBeLessThan(2_000);
    await other.query("SELECT pg_advisory_unlock($1)", [0x6b697465]);
    other.release();
  });
});
