/**
 * The CLI off the happy path (a helper's walkthrough; each case failed on the code before):
 * output into a pipe that closes (`| head -1`), Ctrl-C during a redrive, replay, or a read that
 * started the embedded PostgreSQL for itself, `--db` on a schema that is not this version's, a
 * switch given a value, a name with a newline, an id the history does not hold, a registry
 * file's bindings counted as 0 in "broker started".
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensurePartitions } from "../../src/store/db.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { bind } from "../support/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { cliArgs, runCli } from "../support/built-src.js";
import { waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deadLetterDue } from "../support/dead-letters.js";
import { removePlacedDataDirs } from "../support/placed-dirs.js";
import { publishRecord } from "../support/records.js";

const ROOT = path.resolve(import.meta.dirname, "../..");

const ENV = { ...process.env, VITEST: undefined, KITEQ_LOG_LEVEL: undefined };
const cli = (args: string[]) => runCli(args);

function start(args: string[]): {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, cliArgs(args), {
    cwd: ROOT,
    env: ENV,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, stderr: () => stderr, exited };
}

describe("e2e: CLI interrupted, piped, on a schema not its own, and other edges", () => {
  let db: TestDatabase;

  /** `n` messages of `topic` owed to `groupId`, then dead-lettered (deliver limit 1). */
  const deadLetters = async (groupId: string, n: number, topic = "dlq") => {
    for (let done = 0; done < n; done += 1000) {
      const now = new Date();
      const batch = Array.from({ length: Math.min(1000, n - done) }, () =>
        publishRecord(now, [groupId], { topic, deliverLimit: 1 }),
      );
      await insertPublishBatch(db.pool, batch, { now, nodeId: "t", leaseUntil: now, firstTxCheckAt: now });
      await deadLetterDue(db.pool, groupId, { now });
    }
  };
  const count = async (sql: string, params: unknown[]) =>
    (await db.pool.query<{ n: number }>(sql, params)).rows[0]!.n;
  const owed = (groupId: string) =>
    count("SELECT count(*)::int AS n FROM deliveries WHERE group_id = $1", [groupId]);
  const redriven = (groupId: string) =>
    count("SELECT count(*)::int AS n FROM message_events WHERE group_id = $1 AND kind = 'redriven'", [
      groupId,
    ]);

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
  });
  afterAll(async () => db?.drop());

  it("redrive into a pipe that closes (| head -1): no stack trace, and every dead letter redriven", async () => {
    await deadLetters("epipe", 200);
    const run = start(["redrive", "--group", "epipe", "--since", "1h", "--db", db.url]);
    // What `head -1` does: read the first line, then close the pipe.
    run.child.stdout!.once("data", () => run.child.stdout!.destroy());
    const code = await run.exited;
    // Before: "Unhandled 'error' event ... Error: write EPIPE" with a stack trace, exit 1, after
    // 3 of the 200.
    expect(run.stderr()).not.toMatch(/Unhandled 'error' event|\n\s+at /);
    expect(code).toBe(0);
    expect(await owed("epipe")).toBe(200);
    expect(await redriven("epipe")).toBe(200);
  });

  it("a range redrive stamps each batch with its own time, not the whole run with one", async () => {
    await deadLetters("stamped", 500);
    const run = await cli(["redrive", "--group", "stamped", "--since", "1h", "--db", db.url]);
    expect(run.code, run.stderr).toBe(0);
    // Before: all 500 `redriven` rows at the run's start, one instant, and a page of the group's
    // history reads every row of the instant it starts in (quadratic paging for a large re-drive).
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM message_events WHERE group_id = 'stamped' AND kind = 'redriven'
        GROUP BY at`,
    );
    expect(rows.reduce((a, r) => a + r.n, 0)).toBe(500);
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...rows.map((r) => r.n))).toBeLessThanOrEqual(200);
  });

  it("redrive --dry-run lists what a range redrive would take and changes nothing", async () => {
    await deadLetters("dry", 150);
    const dry = await cli([
      "redrive",
      "--group",
      "dry",
      "--since",
      "1h",
      "--limit",
      "100",
      "--dry-run",
      "--db",
      db.url,
    ]);
    // Before: "redrive: flag --dry-run does not apply" (exit 2); only the admin API could preview.
    expect(dry.code, dry.stderr).toBe(0);
    const lines = dry.stdout.trim().split("\n");
    expect(lines.filter((l) => l.startsWith("would redrive "))).toHaveLength(100);
    expect(lines.at(-1)).toMatch(
      /^100 dead-lettered message\(s\) of group dry in \[.*\) would be redriven \(dry run: nothing changed\)$/,
    );
    expect(dry.stderr).toContain("(first 100 only");
    expect(await redriven("dry")).toBe(0);
    expect(await owed("dry")).toBe(0);
    const one = await cli([
      "redrive",
      "--group",
      "dry",
      "--message-id",
      "0".repeat(32),
      "--dry-run",
      "--db",
      db.url,
    ]);
    expect(one.code).toBe(2);
    expect(one.stderr).toMatch(/kiteq-pg explain <messageId>/);
  });

  it("replay --dry-run counts what the replay would take, writes nothing, and the replay then takes as many", async () => {
    await bind(db.pool, { groupId: "dry-replay", topic: "dry-topic", messageType: "*", bindType: 2 });
    const now = new Date();
    const records = Array.from({ length: 120 }, () => publishRecord(now, [], { topic: "dry-topic" }));
    await insertPublishBatch(db.pool, records, { now, nodeId: "t", leaseUntil: now, firstTxCheckAt: now });
    const args = ["replay", "--topic", "dry-topic", "--group", "dry-replay", "--since", "1h", "--db", db.url];
    const dry = await cli([...args, "--dry-run"]);
    // Before: "replay: flag --dry-run does not apply" (exit 2): no way to see a replay's size first.
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout.trim()).toBe(
      "120 message(s) of topic dry-topic would be replayed to group dry-replay (dry run: nothing written)",
    );
    expect(await owed("dry-replay")).toBe(0);
    expect(await redriven("dry-replay")).toBe(0);
    const real = await cli(args);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout.trim()).toBe("120 message(s) of topic dry-topic replayed to group dry-replay");
    expect(await owed("dry-replay")).toBe(120);
    // Owed now: a second dry run counts none.
    expect((await cli([...args, "--dry-run"])).stdout).toMatch(/^0 message\(s\)/);
  });

  it("read and redrive wording: --limit on one message's history, an unbounded --limit, a redrive of an owed message", async () => {
    const now = new Date();
    const [record] = [publishRecord(now, ["owing"], { topic: "owed-topic" })];
    await insertPublishBatch(db.pool, [record!], { now, nodeId: "t", leaseUntil: now, firstTxCheckAt: now });
    const id = record!.messageId;
    // Before: taken and ignored (the whole history printed).
    const limited = await cli(["history", id, "--limit", "5", "--db", db.url]);
    expect(limited.code).toBe(2);
    expect(limited.stderr.trim()).toBe("kiteq-pg: history: --limit applies to history --group only");
    // Before: "must be an integer from 1 to 9007199254740991".
    const zero = await cli(["history", "--group", "owing", "--since", "1h", "--limit", "0", "--db", db.url]);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain('--limit must be an integer of at least 1, got "0"');
    // Before: "it was never dead-lettered or expired for group owing", as if it were lost.
    const owedOne = await cli(["redrive", "--group", "owing", "--message-id", id, "--db", db.url]);
    expect(owedOne.code).toBe(1);
    expect(owedOne.stderr).toContain(
      `${id} not redriven: it is owed to group owing now (never dead-lettered or expired)`,
    );
  });

  it("Ctrl-C during a redrive: it stops, says how many were redriven, and the history agrees", async () => {
    await deadLetters("sigint", 2000);
    const run = start(["redrive", "--group", "sigint", "--since", "1h", "--db", db.url]);
    run.child.stdout!.once("data", () => run.child.kill("SIGINT"));
    const code = await run.exited;
    // Before: exit 130 and nothing said (558 lines printed, 559 redriven in the database).
    expect(code).toBe(130);
    const said = /SIGINT: stopped after (\d+) of 2000 dead-lettered message\(s\) of group sigint/.exec(
      run.stderr(),
    );
    expect(said, run.stderr()).not.toBeNull();
    const n = Number(said![1]);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(2000);
    expect(await redriven("sigint")).toBe(n);
    expect(await owed("sigint")).toBe(n);
  });

  it("Ctrl-C during a replay: it stops after whole batches and says how many", async () => {
    await bind(db.pool, { groupId: "rp", topic: "replayed", messageType: "pay" });
    await deadLetters("rp", 30_000, "replayed");
    const run = start(["replay", "--topic", "replayed", "--group", "rp", "--since", "1h", "--db", db.url]);
    // Once the first batch is written.
    await waitFor(async () => (await owed("rp")) > 0, 30_000, "a first batch replayed");
    run.child.kill("SIGINT");
    const code = await run.exited;
    const text = run.stderr();
    if (code === 0) return; // it finished before the signal: nothing to say then
    expect(code).toBe(130);
    // Before: exit 130 with no output at all.
    const said = /SIGINT: stopped after (\d+) message\(s\) of topic replayed replayed to group rp/.exec(text);
    expect(said, text).not.toBeNull();
    expect(await owed("rp")).toBe(Number(said![1]));
  });

  it("Ctrl-C of a read that started the embedded PostgreSQL for itself stops that PostgreSQL", async () => {
    const base = path.join(ROOT, ".tmp");
    await mkdir(base, { recursive: true });
    const dir = await mkdtemp(path.join(base, "cli-sigint-"));
    try {
      // A store that exists, with no broker running on it.
      const migrated = await cli(["migrate", "--data-dir", dir, "--admin", "-1"]);
      expect(migrated.code).toBe(0);
      // migrate is no node: its lines named the default node id all the same.
      expect(migrated.stdout).toContain('"msg":"migrations applied"');
      expect(migrated.stdout).not.toContain('"node"');
      const pidFile = path.join(dir, "pg", "postmaster.pid");
      expect(existsSync(pidFile)).toBe(false);
      const run = start(["history", "--group", "g", "--since", "1h", "--data-dir", dir, "--admin", "-1"]);
      await waitFor(() => existsSync(pidFile), 30_000, "the command's PostgreSQL started");
      const postmaster = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
      run.child.kill("SIGINT");
      expect(await run.exited).toBe(130);
      // Before: that postgres kept running (later commands attached to it as to a broker's).
      await waitFor(
        () => {
          try {
            process.kill(postmaster, 0);
            return false;
          } catch {
            return true;
          }
        },
        30_000,
        "the command's PostgreSQL stopped",
      );
      expect(existsSync(pidFile)).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await removePlacedDataDirs(dir);
    }
  });

  it("Ctrl-C while the command's PostgreSQL is still starting stops it, however slow the start", async () => {
    const base = path.join(ROOT, ".tmp");
    await mkdir(base, { recursive: true });
    const dir = await mkdtemp(path.join(base, "cli-sigint-start-"));
    const pidFile = path.join(dir, "pg", "postmaster.pid");
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      expect((await cli(["migrate", "--data-dir", dir, "--admin", "-1"])).code).toBe(0);
      // A start slower than the cleanup's 10 s bound (a loaded machine): the postmaster frozen
      // (SIGSTOP) as soon as its postmaster.pid appears, before it reports "ready". The window is
      // tens of ms; a lost race (it was ready) is tried again.
      let frozen: { run: ReturnType<typeof start>; postmaster: number } | undefined;
      for (let attempt = 1; frozen === undefined && attempt <= 5; attempt++) {
        const run = start(["history", "--group", "g", "--since", "1h", "--data-dir", dir, "--admin", "-1"]);
        let lines: string[] = [];
        const deadline = Date.now() + 30_000;
        while (lines.length === 0 || !/^\d+$/.test(lines[0]!)) {
          if (Date.now() > deadline) throw new Error("the command's PostgreSQL did not start in 30 s");
          await new Promise((r) => setTimeout(r, 1));
          if (existsSync(pidFile)) lines = readFileSync(pidFile, "utf8").split("\n");
        }
        const postmaster = Number(lines[0]);
        process.kill(postmaster, "SIGSTOP");
        const status = readFileSync(pidFile, "utf8").split("\n")[7]?.trim() ?? "";
        if (status !== "ready") {
          frozen = { run, postmaster };
          break;
        }
        process.kill(postmaster, "SIGCONT");
        expect(await run.exited).toBe(0);
        await waitFor(() => !alive(postmaster), 30_000, "the command's PostgreSQL stopped after its read");
      }
      if (frozen === undefined)
        throw new Error("the postmaster was ready before it could be frozen, 5 times");
      const { run, postmaster } = frozen;
      try {
        run.child.kill("SIGINT");
        expect(await run.exited).toBe(130);
      } finally {
        process.kill(postmaster, "SIGCONT");
      }
      // Before: the cleanup awaited the start, was cut at 10 s, and the server, once thawed,
      // finished starting and ran on with nobody to stop it. Now it was asked to stop at once.
      await waitFor(() => !alive(postmaster), 30_000, "the command's PostgreSQL stopped");
      expect(existsSync(pidFile)).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await removePlacedDataDirs(dir);
    }
  });

  it("--json=false is off (it printed JSON); a newline in a name stays on one line; an unknown id names retention", async () => {
    await bind(db.pool, { groupId: "g-switch", topic: "t-switch", messageType: "m" });
    const text = await cli(["bind", "list", "--json=false", "--db", db.url, "--admin", "-1"]);
    expect(text.code).toBe(0);
    expect(text.stdout).not.toMatch(/^\[/);
    expect(text.stdout).toContain("g-switch");
    const bad = await cli(["bind", "list", "--json=maybe", "--db", db.url, "--admin", "-1"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('kiteq-pg: bind list: --json must be true or false, got "maybe"');
    const bound = await cli([
      "bind",
      "add",
      "--group",
      "g\nfake",
      "--topic",
      "t",
      "--message-type",
      "m",
      "--db",
      db.url,
    ]);
    expect(bound.code).toBe(0);
    // Before: "bound group g" and "fake <- topic t, ..." on a second line.
    expect(bound.stdout.trim().split("\n")).toHaveLength(1);
    expect(bound.stdout).toContain("group g\\nfake <- topic t");
    const unknown = await cli(["explain", "0".repeat(32), "--db", db.url, "--admin", "-1"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("received longer ago than the history is kept: --retention-days");
  });

  it("a Fanout binding given a message type is refused, not bound to every type in silence", async () => {
    const args = ["bind", "add", "--group", "g-fan", "--topic", "t-fan", "--message-type", "only-this"];
    const refused = await cli([...args, "--type", "fanout", "--db", db.url]);
    // Before: exit 0, "bound group g-fan <- topic t-fan, every message type (fanout ...)".
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--type fanout takes every message type of the topic");
    const { rows } = await db.pool.query("SELECT 1 FROM bindings WHERE group_id = 'g-fan'");
    expect(rows).toHaveLength(0);
    expect(
      (await cli(["bind", "add", "--group", "g-fan", "--topic", "t-fan", "--type", "fanout", "--db", db.url]))
        .code,
    ).toBe(0);
  });

  it('serve with a registry file: "broker started" counts the file\'s bindings', async () => {
    const own = await createTestDatabase();
    await mkdir(path.join(ROOT, ".tmp"), { recursive: true });
    const dir = await mkdtemp(path.join(ROOT, ".tmp", "cli-registry-ok-"));
    let broker: BrokerProcess | undefined;
    try {
      const file = path.join(dir, "registry.yaml");
      writeFileSync(
        file,
        "bindings:\n  - {groupIds: [a, b], topic: t, messageType: m}\n  - {groupIds: [c], topic: t, bindType: fanout}\n",
      );
      broker = await startBrokerProcess(["--db", own.url, "--registry-file", file]);
      const started = broker.logs.find((l) => l.msg === "broker started");
      // Before: "bindings":0 (read before the file's bindings were in the table).
      expect(started?.bindings).toBe(3);
    } finally {
      await broker?.stop();
      await rm(dir, { recursive: true, force: true });
      await own.drop();
    }
  });

  it("serve with a registry file that is not YAML: one line and exit 2, before anything starts", async () => {
    const base = path.join(ROOT, ".tmp");
    await mkdir(base, { recursive: true });
    const dir = await mkdtemp(path.join(base, "cli-registry-"));
    try {
      const file = path.join(dir, "bad.yaml");
      writeFileSync(file, "brokers:\nfoo: [unclosed\n");
      const started = Date.now();
      const r = await cli([
        "serve",
        "--registry-file",
        file,
        "--data-dir",
        path.join(dir, "data"),
        "--bind",
        "127.0.0.1:0",
        "--admin",
        "-1",
      ]);
      // Before: exit 1 after the embedded PostgreSQL had started, with the parser's excerpt and
      // caret on lines of their own.
      expect(r.code, r.stderr).toBe(2);
      const lines = r.stderr
        .trim()
        .split("\n")
        .filter((l) => !l.startsWith("{"));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/not valid YAML: .*line \d+, column \d+/);
      expect(existsSync(path.join(dir, "data", "pg"))).toBe(false);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("db-url with several shards prints every shard's URL, not the first only", async () => {
    const urls = ["postgres://u:p@127.0.0.1:1/a", "postgres://u:p@127.0.0.1:2/b"];
    const text = await cli(["db-url", "--db", urls.join(" ")]);
    expect(text.code).toBe(0);
    // Before: the first URL alone (a second node given it refuses to start: another shard list).
    expect(text.stdout.trim().split("\n")).toEqual(urls);
    const json = await cli(["db-url", "--db", urls.join(" "), "--json"]);
    expect(JSON.parse(json.stdout)).toEqual({ url: urls[0], urls, embedded: false });
  });

  it("--db migrated by a newer version: writes are refused as migrate refuses, reads warn", async () => {
    await db.pool.query(
      "INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('from-the-future', 4102444800000)",
    );
    try {
      const migrate = await cli(["migrate", "--db", db.url]);
      expect(migrate.code).toBe(1);
      expect(migrate.stderr).toMatch(/newer version/);
      // Before: exit 0, "bound group g-newer ..." written into the newer schema.
      const bound = await cli([
        "bind",
        "add",
        "--group",
        "g-newer",
        "--topic",
        "t",
        "--message-type",
        "m",
        "--db",
        db.url,
      ]);
      expect(bound.code).toBe(1);
      expect(bound.stderr).toMatch(/newer version/);
      expect(await count("SELECT count(*)::int AS n FROM bindings WHERE group_id = 'g-newer'", [])).toBe(0);
      const redrive = await cli(["redrive", "--group", "epipe", "--since", "1h", "--db", db.url]);
      expect(redrive.code).toBe(1);
      expect(redrive.stderr).toMatch(/newer version/);
      const list = await cli(["bind", "list", "--db", db.url, "--admin", "-1"]);
      expect(list.code).toBe(0);
      expect(list.stderr).toMatch(/newer version.*reading it anyway/);
    } finally {
      await db.pool.query("DELETE FROM drizzle.__drizzle_migrations WHERE hash = 'from-the-future'");
    }
  });

  it("--db missing a migration of this version: writes are refused with 'run kiteq-pg migrate first'", async () => {
    const { rows } = await db.pool.query<{ id: number; hash: string; created_at: string }>(
      "DELETE FROM drizzle.__drizzle_migrations WHERE id = (SELECT max(id) FROM drizzle.__drizzle_migrations) RETURNING id, hash, created_at",
    );
    try {
      const bound = await cli([
        "bind",
        "add",
        "--group",
        "g-old",
        "--topic",
        "t",
        "--message-type",
        "m",
        "--db",
        db.url,
      ]);
      expect(bound.code).toBe(1);
      expect(bound.stderr).toMatch(/lacks 1 migration of this kiteq-pg: run kiteq-pg migrate first/);
    } finally {
      await db.pool.query(
        "INSERT INTO drizzle.__drizzle_migrations (id, hash, created_at) VALUES ($1, $2, $3)",
        [rows[0]!.id, rows[0]!.hash, rows[0]!.created_at],
      );
    }
  });
});
