import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SUITE_NAMES } from "../../src/bench/main.js";
import { listBindings } from "../../src/store/bindings.js";
import { ensurePartitions } from "../../src/store/db.js";
import { claimDueDeliveries, nackDeliveries } from "../../src/store/deliveries.js";
import { freePort } from "../../src/store/embedded.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { startBrokerProcess } from "../support/broker-process.js";
import { runCli } from "../support/built-src.js";
import { waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const ROOT = path.resolve(import.meta.dirname, "../..");

const cli = (args: string[], timeoutMs = 60_000) => runCli(args, { timeoutMs });

const lines = (s: string) => s.split("\n").filter((l) => l.trim() !== "");

describe("e2e: the kiteq-pg CLI", () => {
  let db: TestDatabase;
  const withDb = (...args: string[]) => cli([...args, "--db", db.url]);

  /** A message of `groupId` dead-lettered through the store functions; returns its id. */
  const deadLetter = async (groupId: string): Promise<string> => {
    const messageId = randomBytes(16).toString("hex");
    const now = new Date();
    await insertPublishBatch(
      db.pool,
      [
        {
          messageId,
          topic: "dlq",
          messageType: "d",
          groupId: "producer",
          commit: true,
          expiresAt: new Date(now.getTime() + 3600_000),
          deliverLimit: 1,
          createdAt: now,
          properties: [],
          snappy: false,
          bodyIsString: true,
          body: Buffer.from("dead"),
          deliveries: [{ groupId, claimedBy: null }],
        },
      ],
      { now, nodeId: "test", leaseUntil: now, firstTxCheckAt: now },
    );
    const [c] = await claimDueDeliveries(db.pool, {
      groups: [groupId],
      limits: [1],
      now: new Date(now.getTime() + 1),
      claimer: "test/1",
      leaseUntil: new Date(now.getTime() + 30_000),
    });
    expect(c?.messageId).toBe(messageId);
    const written = await nackDeliveries(
      db.pool,
      [
        {
          messagePk: c!.messagePk,
          groupId,
          claimEpoch: c!.claimEpoch,
          attempt: 1,
          pushedAt: now,
          failedAt: new Date(now.getTime() + 2),
          nextAttemptAt: now,
          deadLetter: true,
          reason: "false",
        },
      ],
      "test",
    );
    expect(written.events).toBe(3);
    return messageId;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
  });
  afterAll(async () => db?.drop());

  /** bind list, migrate and serve on a --db at `port`: each exits 1 with `line` alone, no secret, no trace. */
  const expectOneLineFromEach = async (port: number, line: string) => {
    const url = `postgres://kq:secret@127.0.0.1:${port}/kiteq`;
    const results = await Promise.all([
      cli(["bind", "list", "--db", url]),
      cli(["migrate", "--db", url]),
      cli(["serve", "--admin", "0", "--bind", `127.0.0.1:${await freePort()}`, "--db", url]),
    ]);
    for (const r of results) {
      expect(r.code).toBe(1);
      expect(lines(r.stderr).filter((l) => l.startsWith("kiteq-pg: "))).toEqual([line]);
      expect(r.stderr).not.toContain("secret");
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  };

  it("a database nothing answers on: exit 1 and one line naming it, from a command and from serve", async () => {
    const port = await freePort();
    await expectOneLineFromEach(
      port,
      `kiteq-pg: KQ_STORE_FAILED: PostgreSQL at 127.0.0.1:${port} unreachable (connect ECONNREFUSED 127.0.0.1:${port})`,
    );
  });

  it("a --db port where something other than PostgreSQL answers (HTTP): exit 1 and one line naming it", async () => {
    // Before: "KQ_INTERNAL: Connection terminated unexpectedly", naming neither the address nor --db.
    const http = net.createServer((s) => {
      s.on("error", () => undefined);
      s.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
    const port = (http.address() as net.AddressInfo).port;
    try {
      await expectOneLineFromEach(
        port,
        `kiteq-pg: KQ_STORE_FAILED: PostgreSQL at 127.0.0.1:${port}/kiteq closed the connection before answering (Connection terminated unexpectedly): is a PostgreSQL server listening there?`,
      );
    } finally {
      http.close();
    }
  });

  it("a database that refuses the login or does not exist: exit 1 and one line naming it", async () => {
    const u = new URL(db.url);
    const wrongPassword = new URL(db.url);
    wrongPassword.password = "not-the-password";
    const noDatabase = new URL(db.url);
    noDatabase.pathname = "/no_such_db";
    const [password, missing] = await Promise.all([
      cli(["bind", "list", "--db", wrongPassword.href]),
      cli(["serve", "--admin", "0", "--bind", `127.0.0.1:${await freePort()}`, "--db", noDatabase.href]),
    ]);
    const target = `${u.hostname}:${u.port}`;
    expect(password.code).toBe(1);
    expect(lines(password.stderr)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^kiteq-pg: KQ_STORE_FAILED: PostgreSQL at ${target}${u.pathname} refused the connection \\(password authentication failed`,
        ),
      ),
    ]);
    expect(password.stderr).not.toContain("not-the-password");
    expect(missing.code).toBe(1);
    expect(lines(missing.stderr).filter((l) => l.startsWith("kiteq-pg: "))).toEqual([
      `kiteq-pg: KQ_STORE_FAILED: PostgreSQL at ${target}/no_such_db refused the connection (database "no_such_db" does not exist)`,
    ]);
  });

  it("serve on a port another process holds: exit 2 (a config error) and one line naming the flag and the address, before the store starts", async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const held = (holder.address() as net.AddressInfo).port;
    try {
      const [bind, admin] = await Promise.all([
        cli(["serve", "--admin", "0", "--bind", `127.0.0.1:${held}`, "--db", db.url]),
        cli([
          "serve",
          "--admin",
          `127.0.0.1:${held}`,
          "--bind",
          `127.0.0.1:${await freePort()}`,
          "--db",
          db.url,
        ]),
      ]);
      for (const [r, flag] of [
        [bind, "--bind"],
        [admin, "--admin"],
      ] as const) {
        expect(r.code).toBe(2);
        expect(lines(r.stderr).filter((l) => l.startsWith("kiteq-pg: "))).toEqual([
          `kiteq-pg: KQ_CONFIG_INVALID: cannot listen on 127.0.0.1:${held} (${flag}): the address is in use by another process (another kiteq-pg node?): choose another port`,
        ]);
        // Said before anything started (it migrated and took the maintenance lead first).
        expect(r.stdout).not.toMatch(/cluster-wide maintenance|schema up to date|migrat/);
      }
    } finally {
      holder.close();
    }
  });

  it("a read in a folder with no store: exit 1 and one line, no new store made there", async () => {
    await mkdir(path.resolve(".tmp"), { recursive: true });
    const dir = await mkdtemp(path.resolve(".tmp", "cli-nostore-"));
    try {
      const dataDir = path.join(dir, "data");
      const results = await Promise.all([
        cli([
          "history",
          "--group",
          "g",
          "--since",
          "1h",
          "--limit",
          "200000",
          "--data-dir",
          dataDir,
          "--admin",
          "0",
        ]),
        cli(["explain", "0".repeat(32), "--data-dir", dataDir, "--admin", "0"]),
        cli(["redrive", "--group", "g", "--since", "1h", "--data-dir", dataDir]),
        cli(["replay", "--topic", "t", "--group", "g", "--since", "1h", "--data-dir", dataDir]),
      ]);
      for (const r of results) {
        expect(r.code, r.stderr).toBe(1);
        // Before: a new, empty PostgreSQL made there, "no events", exit 0.
        expect(lines(r.stderr)).toEqual([
          `kiteq-pg: KQ_CONFIG_INVALID: no kiteq-pg store in ${path.join(dataDir, "pg")}: nothing was ever stored here; run the command where the broker runs, or give its --data-dir or --db`,
        ]);
      }
      expect(existsSync(path.join(dataDir, "pg", "PG_VERSION"))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("--expires-in beyond a year: a usage error (before: a raw PostgreSQL error about an invalid time)", async () => {
    for (const args of [
      ["redrive", "--group", "g", "--since", "1h", "--expires-in", "9007199254740991"],
      ["replay", "--topic", "t", "--group", "g", "--since", "1h", "--expires-in", "9007199254740991"],
    ]) {
      const r = await withDb(...args);
      expect(r.code, r.stderr).toBe(2);
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toContain("--expires-in");
    }
  });

  it("usage errors exit 2 with one line; --help lists the commands", async () => {
    const [unknown, missing, badFlag, help, longTopic, noId, version] = await Promise.all([
      cli(["frobnicate"]),
      cli(["bind", "add", "--group", "g", "--topic", "t"]),
      cli(["redrive", "--group", "g", "--message-id", "nothex"]),
      cli(["--help"]),
      cli(["bind", "add", "--group", "g", "--topic", "t".repeat(300), "--message-type", "m"]),
      cli(["explain"]),
      cli(["--version"]),
    ]);
    // Before: "unknown flag --version", exit 2.
    expect(version.code).toBe(0);
    // With the commit it runs when run from a git checkout (this test: a clone), e.g. 0.1.0+4d203b3.
    expect(version.stdout).toMatch(/^kiteq-pg \d+\.\d+\.\d+\+[0-9a-f]{7}\n$/);
    // Before: bound (exit 0), though every publish to that topic is refused.
    expect(longTopic.code).toBe(2);
    expect(lines(longTopic.stderr)).toEqual([
      "kiteq-pg: bind add: --topic: invalid topic: 300 bytes, at most 255 allowed (a publish carrying it would be refused)",
    ]);
    expect(noId.code).toBe(2);
    expect(lines(noId.stderr)).toEqual(["kiteq-pg: explain: give the message id (explain <messageId>)"]);
    expect(unknown.code).toBe(2);
    expect(lines(unknown.stderr)).toEqual([expect.stringContaining('unknown command "frobnicate"')]);
    expect(missing.code).toBe(2);
    expect(lines(missing.stderr)).toEqual(["kiteq-pg: bind add: --message-type is required"]);
    expect(badFlag.code).toBe(2);
    expect(lines(badFlag.stderr)).toHaveLength(1);
    expect(help.code).toBe(0);
    for (const c of [
      "serve",
      "migrate",
      "bind add",
      "bind remove",
      "bind list",
      "history",
      "redrive",
      "send",
      "consume",
    ]) {
      expect(help.stdout).toMatch(new RegExp(`^  ${c} `, "m"));
    }
    // Before: "publish | e2e | compare" (backlog, takeover and sdk left out).
    expect(SUITE_NAMES).toContain("takeover");
    expect(help.stdout).toMatch(new RegExp(`^  bench +benchmarks: ${SUITE_NAMES.join(" \\| ")} \\(`, "m"));
  });

  it("bind add / list / remove round trip, notifying running brokers", async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    const notified: string[] = [];
    listener.on("notification", (n) => notified.push(n.channel));
    await listener.query("LISTEN kiteq_bindings");
    try {
      const add = await withDb(
        "bind",
        "add",
        "--group",
        "cg",
        "--topic",
        "trade",
        "--message-type",
        "pay",
        "--watermark",
        "500",
      );
      expect(add.code).toBe(0);
      expect(add.stdout).toContain(
        "group cg <- topic trade, message type pay (direct, watermark 500/s, persistent)",
      );
      const fanout = await withDb(
        "bind",
        "add",
        "--group",
        "fg",
        "--topic",
        "trade",
        "--type",
        "fanout",
        "--persistent",
        "false",
      );
      expect(fanout.code).toBe(0);
      await waitFor(() => notified.length === 2, 15_000, "two binding notifications");
      expect(notified).toEqual(["kiteq_bindings", "kiteq_bindings"]);

      const table = await withDb("bind", "list");
      expect(table.code).toBe(0);
      expect(lines(table.stdout)).toEqual([
        expect.stringMatching(/^GROUP\s+TOPIC\s+MESSAGE TYPE\s+TYPE\s+WATERMARK\s+PERSISTENT$/),
        expect.stringMatching(/^cg\s+trade\s+pay\s+direct\s+500\s+true$/),
        expect.stringMatching(/^fg\s+trade\s+\*\s+fanout\s+6000\s+false$/),
      ]);
      const json = await withDb("bind", "list", "--json");
      expect(JSON.parse(json.stdout)).toEqual([
        {
          groupId: "cg",
          topic: "trade",
          messageType: "pay",
          bindType: 0,
          version: "1.0.0",
          watermark: 500,
          persistent: true,
        },
        {
          groupId: "fg",
          topic: "trade",
          messageType: "*",
          bindType: 2,
          version: "1.0.0",
          watermark: 6000,
          persistent: false,
        },
      ]);

      const remove = await withDb(
        "bind",
        "remove",
        "--group",
        "cg",
        "--topic",
        "trade",
        "--message-type",
        "pay",
      );
      expect(remove.code).toBe(0);
      expect(remove.stdout).toContain("removed 1 binding of group cg to topic trade");
      expect((await listBindings(db.pool)).map((b) => b.groupId)).toEqual(["fg"]);
      await waitFor(() => notified.length === 3, 15_000, "a notification of the removal");
      const again = await withDb("bind", "remove", "--group", "cg", "--topic", "trade");
      expect(again.code).toBe(1);
      expect(lines(again.stderr)).toEqual(["kiteq-pg: no binding of group cg to topic trade"]);
    } finally {
      await listener.end();
    }
  });

  it("send and consume through a broker, then the history of a sent message", async () => {
    expect(
      (await withDb("bind", "add", "--group", "sc", "--topic", "orders", "--message-type", "new")).code,
    ).toBe(0);
    const broker = await startBrokerProcess(["--db", db.url]);
    try {
      const port = String(broker.port);
      const sent = await withDb(
        "send",
        "--topic",
        "orders",
        "--message-type",
        "new",
        "--group",
        "shop",
        "--count",
        "2",
        "--body",
        "order!",
        "--port",
        port,
        "--json",
      );
      expect(sent.code).toBe(0);
      const acks = lines(sent.stdout).map((l) => JSON.parse(l) as { messageId: string; status: boolean });
      expect(acks).toHaveLength(2);
      // --rate paces: 11 at 5/s take 2 s (the first at once, the last 2 s later; unpaced, the
      // command with its start-up takes about 1.5 s here).
      const pacedStart = Date.now();
      const paced = await withDb(
        "send",
        "--topic",
        "orders",
        "--message-type",
        "paced",
        "--group",
        "shop",
        "--count",
        "11",
        "--rate",
        "5",
        "--port",
        port,
      );
      expect(paced.code).toBe(0);
      expect(lines(paced.stdout)).toHaveLength(11);
      expect(Date.now() - pacedStart).toBeGreaterThanOrEqual(2_000);
      expect(acks.every((a) => a.status)).toBe(true);
      const ids = acks.map((a) => a.messageId);

      const consumed = await withDb(
        "consume",
        "--group",
        "sc",
        "--count",
        "2",
        "--timeout",
        "30",
        "--port",
        port,
      );
      expect(consumed.code).toBe(0);
      const got = lines(consumed.stdout);
      expect(got.map((l) => l.split(/\s+/)[0]).sort()).toEqual([...ids].sort());
      expect(got[0]).toMatch(/^[0-9a-f]{32}\s+orders\s+new\s+"order!"$/);

      // The acks are written in a batch shortly after they arrive.
      let text = "";
      for (let i = 0; i < 20 && !/\backed\b/.test(text); i++) {
        const h = await withDb("history", "--message-id", ids[0]!);
        expect(h.code).toBe(0);
        text = h.stdout;
        if (!/\backed\b/.test(text)) await new Promise((r) => setTimeout(r, 250));
      }
      const rows = lines(text);
      expect(rows[0]).toBe(`message ${ids[0]}: topic orders, message type new, from group shop, 6 bytes`);
      expect(rows[2]).toMatch(/^AT\s+KIND\s+GROUP\s+ATTEMPT\s+NODE\s+DETAIL$/);
      // At least once: a push that failed (the consumer's connection closing under a loaded
      // machine) is a delivered + nacked pair before the attempt that was acked.
      const kinds = rows.slice(3).map((r) => r.split(/\s+/).slice(1, 4));
      const last = kinds.length - 2;
      expect(kinds[0], `history:\n${text}`).toEqual(["received", "-", "-"]);
      expect(kinds.slice(last), `history:\n${text}`).toEqual([
        ["delivered", "sc", String((last + 1) / 2)],
        ["acked", "sc", String((last + 1) / 2)],
      ]);
      for (let k = 1; k < last; k += 2)
        expect(kinds.slice(k, k + 2), `history:\n${text}`).toEqual([
          ["delivered", "sc", String((k + 1) / 2)],
          ["nacked", "sc", String((k + 1) / 2)],
        ]);

      // The other message's ack too: it may come in a later batch (short of CPU: seconds later).
      await waitFor(
        async () =>
          (
            await db.pool.query(
              `SELECT count(DISTINCT m.message_id)::int AS n FROM message_events e JOIN messages m ON m.id = e.message_pk
                WHERE e.group_id = 'sc' AND e.kind = 'acked'`,
            )
          ).rows[0].n === 2,
        15_000,
        "both acks written",
      );
      const group = await withDb("history", "--group", "sc", "--since", "10m", "--json");
      expect(group.code).toBe(0);
      const events = JSON.parse(group.stdout) as { kind: string; messageId: string }[];
      for (const id of ids) {
        const story = events.filter((e) => e.messageId === id).map((e) => e.kind);
        expect(story.slice(-2), story.join(",")).toEqual(["delivered", "acked"]);
        expect(story.slice(0, -2).every((k, i) => k === (i % 2 === 0 ? "delivered" : "nacked"))).toBe(true);
      }
      const none = await withDb("history", "--message-id", randomBytes(16).toString("hex"));
      expect(none.code).toBe(1);
      expect(none.stderr).toContain("in the history");
      // As explain: the id as the argument (before: "unexpected argument"), in any case.
      const positional = await withDb("history", ids[0]!.toUpperCase(), "--json");
      expect(positional.code, positional.stderr).toBe(0);
      expect(JSON.parse(positional.stdout)).toMatchObject({ messageId: ids[0] });
    } finally {
      await broker.stop();
    }
  });

  it("explain <messageId>: each group's state in words, as text and --json; exit 1 when unknown", async () => {
    const id = await deadLetter("xg");
    const text = await withDb("explain", id.toUpperCase());
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`message ${id}: topic dlq`);
    expect(text.stdout).toMatch(/group xg: dead-lettered at \S+ after 1 attempt; last nack: /);
    const json = await withDb("explain", "--message-id", id, "--json");
    const parsed = JSON.parse(json.stdout) as { groups: { groupId: string; state: string }[] };
    expect(parsed.groups.map((g) => [g.groupId, g.state])).toEqual([["xg", "dead_lettered"]]);
    const none = await withDb("explain", randomBytes(16).toString("hex"));
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("in the history");
    const bad = await withDb("explain", "nothex");
    expect(bad.code).toBe(2);
    const two = await withDb("explain", id, "extra");
    expect(two.code).toBe(2);
  });

  it("redrive one dead-lettered message by id, and a group's dead letters of a time range", async () => {
    const id = await deadLetter("dg");
    const one = await withDb("redrive", "--message-id", id.toUpperCase(), "--group", "dg");
    expect(one.code).toBe(0);
    expect(one.stdout).toContain(`redriven ${id} to group dg`);
    const owed = await db.pool.query("SELECT attempts, claimed_by FROM deliveries WHERE group_id = 'dg'");
    expect(owed.rows).toEqual([{ attempts: 0, claimed_by: null }]);
    const history = await withDb("history", "--message-id", id, "--json");
    const kinds = (JSON.parse(history.stdout) as { events: { kind: string; groupId: string }[] }).events.map(
      (e) => e.kind,
    );
    expect(kinds).toEqual(["received", "delivered", "nacked", "dead_lettered", "redriven"]);
    const twice = await withDb("redrive", "--message-id", id, "--group", "dg");
    expect(twice.code).toBe(1);
    expect(lines(twice.stderr)).toEqual([
      `kiteq-pg: ${id} not redriven: it is owed to group dg again (already redriven)`,
    ]);

    const a = await deadLetter("dr");
    const b = await deadLetter("dr");
    const range = await withDb("redrive", "--group", "dr", "--since", "1h");
    expect(range.code).toBe(0);
    expect(range.stdout).toContain(`redriven ${a}`);
    expect(range.stdout).toContain(`redriven ${b}`);
    expect(range.stdout).toMatch(/2 of 2 dead-lettered message\(s\) of group dr in \[.*\) redriven/);
    const rows = await db.pool.query("SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'dr'");
    expect(rows.rows[0].n).toBe(2);
    const empty = await withDb("redrive", "--group", "dr", "--since", "1h");
    expect(empty.stdout).toContain("0 of 0");
  });

  it("replays a time range of a topic to a group", async () => {
    await deadLetter("rp-other"); // topic "dlq": one stored message of the topic in the range
    // Not bound: refused (before: "replayed", and never delivered).
    const unbound = await withDb("replay", "--topic", "dlq", "--group", "rp", "--since", "1h");
    expect(unbound.code).toBe(1);
    expect(lines(unbound.stderr)).toEqual([
      "kiteq-pg: group rp is not bound to topic dlq: a replay would never be delivered; bind it first (kiteq-pg bind add --group rp --topic dlq ...)",
    ]);
    // Bound to another message type only: nothing of type "d" (before: every type of the topic).
    expect(
      (await withDb("bind", "add", "--group", "rp", "--topic", "dlq", "--message-type", "other")).code,
    ).toBe(0);
    const other = await withDb("replay", "--topic", "dlq", "--group", "rp", "--since", "1h");
    expect(other.stdout).toContain("0 message(s) of topic dlq replayed to group rp");
    expect(
      (
        await withDb(
          "bind",
          "add",
          "--group",
          "rp",
          "--topic",
          "dlq",
          "--message-type",
          "^d$",
          "--type",
          "regx",
        )
      ).code,
    ).toBe(0);
    const before = await db.pool.query("SELECT count(*)::int AS n FROM messages WHERE topic = 'dlq'");
    const replay = await withDb("replay", "--topic", "dlq", "--group", "rp", "--since", "1h");
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain(`${before.rows[0].n} message(s) of topic dlq replayed to group rp`);
    const owed = await db.pool.query("SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'rp'");
    expect(owed.rows[0].n).toBe(before.rows[0].n);
    const again = await withDb("replay", "--topic", "dlq", "--group", "rp", "--since", "1h");
    expect(again.stdout).toContain("0 message(s) of topic dlq replayed to group rp");
    // A Regx binding is Go's syntax, as live matching reads it: `\b` is a word boundary (before:
    // PostgreSQL's regex read it as a backspace, and the replay matched nothing).
    expect(
      (
        await withDb(
          "bind",
          "add",
          "--group",
          "rp2",
          "--topic",
          "dlq",
          "--message-type",
          "\\bd\\b",
          "--type",
          "regx",
        )
      ).code,
    ).toBe(0);
    const word = await withDb("replay", "--topic", "dlq", "--group", "rp2", "--since", "1h");
    expect(word.code).toBe(0);
    expect(word.stdout).toContain(`${before.rows[0].n} message(s) of topic dlq replayed to group rp2`);
  });

  // Changed with issue 12: the CLI now uses a running broker's embedded server (password file);
  // a running postmaster it cannot log in to (here: a fake one, no password file) is still refused.
  it("refuses to start the embedded PostgreSQL of a data dir that a running process holds", async () => {
    const base = path.join(ROOT, ".tmp");
    await mkdir(base, { recursive: true });
    const dir = await mkdtemp(path.join(base, "cli-busy-"));
    try {
      await mkdir(path.join(dir, "pg"), { recursive: true });
      // postmaster.pid of a live process (this test runner), listening on port 5999.
      await writeFile(
        path.join(dir, "pg", "postmaster.pid"),
        `${process.pid}\n${dir}/pg\n0\n5999\n\n127.0.0.1\n`,
      );
      const r = await cli(["bind", "list", "--data-dir", dir]);
      expect(r.code).toBe(1);
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toContain("already running");
      expect(r.stderr).toContain("no password file");
      expect(r.stderr).toContain("--db postgres://");
      expect(r.stderr).toContain("stop the broker");
      expect(existsSync(path.join(dir, "pg", "PG_VERSION"))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
