/**
 * The CLI's read commands through a running broker's admin API: the same output as from the
 * database, the database when the admin server is disabled, one clear line for a wrong token.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType, createBinding } from "../../src/binding/binding.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { ensurePartitions } from "../../src/store/db.js";
import { ackDeliveries, claimDueDeliveries, nackDeliveries } from "../../src/store/deliveries.js";
import { freePort } from "../../src/store/embedded.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { runCli } from "../support/built-src.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { publishRecord } from "../support/records.js";

const TOKEN = "cli-api-token-0123456789";

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  runCli(args, { env: { KITEQ_ADMIN_TOKEN: undefined, ...env } });

describe("e2e: CLI read commands through the admin API", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  let adminPort: number;
  let messageId: string;
  const group = "g-cli-api";

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensurePartitions(db.pool, new Date());
    await upsertBinding(
      db.pool,
      createBinding({ groupId: group, topic: "dlq", messageType: "d", bindType: BindType.Direct }),
      "cli",
      new Date(),
    );
    messageId = randomBytes(16).toString("hex");
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
          deliveries: [{ groupId: group, claimedBy: null }],
        },
      ],
      { now, nodeId: "test", leaseUntil: now, firstTxCheckAt: now },
    );
    const [c] = await claimDueDeliveries(db.pool, {
      groups: [group],
      limits: [1],
      now: new Date(now.getTime() + 1),
      claimer: "test/1",
      leaseUntil: new Date(now.getTime() + 30_000),
    });
    await nackDeliveries(
      db.pool,
      [
        {
          messagePk: c!.messagePk,
          groupId: group,
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
    adminPort = await freePort();
    broker = await startBrokerProcess([
      "--db",
      db.url,
      "--admin",
      `127.0.0.1:${adminPort}`,
      "--admin-token",
      TOKEN,
    ]);
  }, 90_000);
  afterAll(async () => {
    await broker?.stop();
    await db?.drop();
  });

  const viaApi = (...args: string[]) =>
    cli([...args, "--db", db.url, "--admin", `127.0.0.1:${adminPort}`, "--verbose"], {
      KITEQ_ADMIN_TOKEN: TOKEN,
    });
  const viaDb = (...args: string[]) => cli([...args, "--db", db.url, "--admin", "-1", "--verbose"]);

  const commands: string[][] = [
    ["history", "--message-id", "MSG"],
    ["history", "--message-id", "MSG", "--json"],
    ["history", "--group", group, "--since", "1h"],
    ["history", "--group", group, "--since", "1h", "--json"],
    ["explain", "MSG"],
    ["bind", "list"],
    ["bind", "list", "--json"],
  ];

  it("every read command prints through the API what it prints from the database", async () => {
    for (const command of commands) {
      const args = command.map((a) => (a === "MSG" ? messageId : a));
      const [a, d] = await Promise.all([viaApi(...args), viaDb(...args)]);
      expect(a.code, `${args.join(" ")}: ${a.stderr}`).toBe(0);
      expect(d.code, `${args.join(" ")}: ${d.stderr}`).toBe(0);
      expect(a.stderr).toContain(`read through the admin API at http://127.0.0.1:${adminPort}`);
      expect(d.stderr).toContain("read from the database");
      expect(a.stdout.length).toBeGreaterThan(0);
      expect(a.stdout, args.join(" ")).toBe(d.stdout);
    }
  }, 120_000);

  it("history --group pages through the API (2,000 a request) and the database alike, each row once", async () => {
    // 2,600 acks at one instant: pages end inside it. Before, the CLI asked the API for the whole
    // read in one answer (10,000 rows held the broker's event loop; more went to the database).
    const now = new Date(Date.now() - 60_000);
    const records = Array.from({ length: 2_600 }, () => publishRecord(now, ["paged"], { topic: "pg" }));
    const stored = await insertPublishBatch(db.pool, records, {
      now,
      nodeId: "t",
      leaseUntil: now,
      firstTxCheckAt: now,
    });
    const ackedAt = new Date(now.getTime() + 1_000);
    await ackDeliveries(
      db.pool,
      stored.map((r) => ({ messagePk: r.pk!, groupId: "paged", attempt: 1, pushedAt: null, ackedAt })),
      "t",
    );
    for (const form of [[], ["--json"]]) {
      const args = ["history", "--group", "paged", "--since", "1h", "--limit", "2500", ...form];
      const [a, d] = await Promise.all([viaApi(...args), viaDb(...args)]);
      expect(a.code, a.stderr).toBe(0);
      expect(a.stderr).toContain("read through the admin API");
      expect(a.stdout).toBe(d.stdout);
      expect(a.stderr).toContain("(first 2500 events only");
      const ids =
        form.length === 0
          ? a.stdout
              .trim()
              .split("\n")
              .slice(1)
              .map((l) => l.split(/\s+/)[2])
          : (JSON.parse(a.stdout) as { messageId: string }[]).map((r) => r.messageId);
      expect(ids).toHaveLength(2_500);
      expect(new Set(ids).size).toBe(2_500);
    }
    const all = await viaApi("history", "--group", "paged", "--since", "1h", "--limit", "3000", "--json");
    expect((JSON.parse(all.stdout) as unknown[]).length).toBe(2_600);
    expect(all.stderr).not.toContain("events only");
  }, 120_000);

  it("explain --json: the same explanation but for the time it was computed", async () => {
    const [a, d] = await Promise.all([
      viaApi("explain", messageId, "--json"),
      viaDb("explain", messageId, "--json"),
    ]);
    expect(a.code).toBe(0);
    expect(a.stderr).toContain("admin API");
    const strip = (s: string) => ({ ...(JSON.parse(s) as Record<string, unknown>), now: null });
    expect(strip(a.stdout)).toEqual(strip(d.stdout));
    expect(strip(a.stdout)).toMatchObject({ groups: [{ groupId: group, state: "dead_lettered" }] });
  });

  it("through the API the database is not needed at all", async () => {
    const r = await cli(
      [
        "explain",
        messageId,
        "--db",
        "postgres://nobody:x@127.0.0.1:1/none",
        "--admin",
        `127.0.0.1:${adminPort}`,
      ],
      { KITEQ_ADMIN_TOKEN: TOKEN },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`group ${group}:`);
  });

  it("an unknown message: exit 1 and one line, through the API too", async () => {
    const unknown = "0".repeat(32);
    const a = await viaApi("explain", unknown);
    expect(a.code).toBe(1);
    expect(a.stderr.trim().split("\n").at(-1)).toBe(
      `kiteq-pg: no message ${unknown} in the history (never stored, or received longer ago than the history is kept: --retention-days)`,
    );
  });

  it("a wrong token: one clear line, exit 1, no stack trace", async () => {
    const r = await cli([
      "bind",
      "list",
      "--db",
      db.url,
      "--admin",
      `127.0.0.1:${adminPort}`,
      "--admin-token",
      "wrong-token-0123456789",
    ]);
    expect(r.code).toBe(1);
    const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
    expect(lines).toEqual([
      expect.stringMatching(/^kiteq-pg: KQ_AUTH_REFUSED: the admin API at .* refused the admin token/),
    ]);
  });

  it("no token given to a broker that requires one: says so (not that a token was refused)", async () => {
    const r = await cli(["bind", "list", "--db", db.url, "--admin", `127.0.0.1:${adminPort}`]);
    expect(r.code).toBe(1);
    const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
    expect(lines).toEqual([
      expect.stringMatching(/^kiteq-pg: KQ_AUTH_REFUSED: the admin API at .* requires an admin token: give/),
    ]);
  });

  it("an --admin given on purpose whose broker serves another database than --db: read through it, with a note", async () => {
    const other = await createTestDatabase();
    try {
      const r = await cli(
        ["bind", "list", "--db", other.url, "--admin", `127.0.0.1:${adminPort}`, "--verbose"],
        { KITEQ_ADMIN_TOKEN: TOKEN },
      );
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(group);
      expect(r.stderr).toContain(
        `kiteq-pg: note: the broker at http://127.0.0.1:${adminPort} (--admin) serves another database than --db names`,
      );
      // The same database: no note.
      const same = await viaApi("bind", "list");
      expect(same.stderr).not.toContain("note:");
    } finally {
      await other.drop();
    }
  });

  it("groups: every group's backlog and dead letters through the running broker, and the same from the database", async () => {
    const r = await viaApi("groups");
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(
      /^GROUP +OWED +OLDEST OWED +IN FLIGHT +DEAD +DELIVERED\/S +ACKED\/S +NACKED\/S +CONSUMERS +BINDINGS$/,
    );
    // The group of this file: nothing owed, its one dead letter, one binding.
    const row = lines.find((l) => l.startsWith(`${group} `));
    expect(row?.split(/ +/)).toEqual([group, "0", "-", "0", "1", "0.0", "0.0", "0.0", "0", "1"]);
    expect(r.stderr).toMatch(/group\(s\), sampled /);
    const json = await viaApi("groups", "--json");
    const body = JSON.parse(json.stdout) as { groups: { groupId: string; deadLetters: number }[] };
    expect(body.groups.find((g) => g.groupId === group)?.deadLetters).toBe(1);
    // Without the admin API, the same listing from the database (it said "groups reads a running
    // broker's admin API", exit 1): rates, consumers and in flight from the nodes' heartbeats.
    const db1 = await viaDb("groups");
    expect(db1.code, db1.stderr).toBe(0);
    expect(db1.stderr).toContain("read from the database");
    expect(db1.stderr).toMatch(/as the last heartbeats of 1 live node\(s\) said\)/);
    expect(db1.stdout.trim().split("\n")[0]).toBe(lines[0]);
    expect(
      db1.stdout
        .trim()
        .split("\n")
        .find((l) => l.startsWith(`${group} `)),
    ).toBe(row);
    const dbJson = JSON.parse((await viaDb("groups", "--json")).stdout) as typeof body;
    const apiJson = JSON.parse((await viaApi("groups", "--json")).stdout) as typeof body;
    expect(dbJson.groups).toEqual(apiJson.groups);
  });

  it("with no broker on the admin address the database answers", async () => {
    const port = await freePort();
    const r = await cli(["bind", "list", "--db", db.url, "--admin", `127.0.0.1:${port}`, "--verbose"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("read from the database");
    expect(r.stdout).toContain(group);
    const disabled = await cli(["bind", "list", "--db", db.url, "--admin", "0", "--verbose"]);
    expect(disabled.code).toBe(0);
    expect(disabled.stderr).toContain("read from the database");
    expect(disabled.stdout).toBe(r.stdout);
  });
});
