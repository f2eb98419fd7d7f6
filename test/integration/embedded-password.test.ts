import { mkdir, mkdtemp, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { type EmbeddedPostgresServer, freePort, startEmbeddedPostgres } from "../../src/store/embedded.js";
import { LEGACY_PASSWORD, passwordFile } from "../../src/store/embedded-access.js";
import { removePlacedDataDir } from "../support/placed-dirs.js";

/** Logs in as postgres with `password`; resolves "ok" or the SQLSTATE of the refusal. */
async function login(port: number, password: string): Promise<string> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", password, database: "kiteq" });
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

async function alterPassword(server: EmbeddedPostgresServer, password: string): Promise<void> {
  const client = new pg.Client({ connectionString: server.tcpUrl("postgres") });
  await client.connect();
  await client.query(`ALTER ROLE postgres PASSWORD ${client.escapeLiteral(password)}`);
  await client.end();
}

describe("integration: the embedded PostgreSQL's password (issue 12)", () => {
  let dir: string;
  let dataDir: string;
  let realDir = "";
  const servers: EmbeddedPostgresServer[] = [];
  const start = async (extra: { port?: number; attachIfRunning?: boolean } = {}) => {
    const s = await startEmbeddedPostgres({ dataDir, logger: silentLogger, ...extra });
    servers.push(s);
    realDir = s.dataDir;
    return s;
  };

  beforeAll(async () => {
    await mkdir(path.resolve(".tmp"), { recursive: true });
    dir = await mkdtemp(path.resolve(".tmp", "embedded-pw-"));
    dataDir = path.join(dir, "pg");
  });
  afterAll(async () => {
    for (const s of servers) await s.stop();
    if (realDir) await removePlacedDataDir(realDir, dir);
    await rm(dir, { recursive: true, force: true });
  });

  it("initialises with a random password kept 0600 in the data directory, and refuses postgres/postgres", async () => {
    const server = await start();
    const file = passwordFile(server.dataDir);
    expect(server.passwordFile).toBe(file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const password = (await readFile(file, "utf8")).trim();
    expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(await login(server.port, password)).toBe("ok");
    expect(await login(server.port, LEGACY_PASSWORD)).toBe("28P01");
    expect(new URL(server.tcpUrl("kiteq")).password).toBe(password);
    await server.stop();
  });

  it("moves a data directory still on postgres/postgres to a new random password on start", async () => {
    // Make it what an old broker left: the fixed password and no password file.
    const old = await start();
    await alterPassword(old, LEGACY_PASSWORD);
    await old.stop();
    await unlink(passwordFile(old.dataDir));

    const server = await start();
    const password = (await readFile(passwordFile(server.dataDir), "utf8")).trim();
    expect(password).not.toBe(LEGACY_PASSWORD);
    expect((await stat(passwordFile(server.dataDir))).mode & 0o777).toBe(0o600);
    expect(await login(server.port, password)).toBe("ok");
    expect(await login(server.port, LEGACY_PASSWORD)).toBe("28P01");
    await server.stop();
  });

  it("finishes a rotation that stopped between ALTER ROLE and the rename", async () => {
    const old = await start();
    const file = passwordFile(old.dataDir);
    const pending = "pending-password-0123456789abcdef";
    await alterPassword(old, pending);
    await writeFile(`${file}.new`, `${pending}\n`, { mode: 0o600 });
    await old.stop();

    const server = await start();
    expect((await readFile(file, "utf8")).trim()).toBe(pending);
    await expect(stat(`${file}.new`)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await login(server.port, pending)).toBe("ok");
    await server.stop();
  });

  it("pins the port, refuses a busy one by name, and lets a second user attach to a running server", async () => {
    const port = await freePort();
    const server = await start({ port });
    expect(server.port).toBe(port);
    const attached = await start({ attachIfRunning: true });
    expect(attached.attached).toBe(true);
    expect(attached.port).toBe(port);
    const client = new pg.Client({ connectionString: attached.url("kiteq") });
    await client.connect();
    expect((await client.query("SELECT 1 AS one")).rows[0].one).toBe(1);
    await client.end();
    await attached.stop(); // not ours: the server keeps running
    expect(await login(port, (await readFile(server.passwordFile, "utf8")).trim())).toBe("ok");
    await server.stop();

    const busy = net.createServer();
    const busyPort = await freePort();
    await new Promise<void>((r) => busy.listen(busyPort, "127.0.0.1", () => r()));
    try {
      await expect(start({ port: busyPort })).rejects.toMatchObject({
        code: "KQ_STORE_FAILED",
        message: expect.stringContaining(`127.0.0.1:${busyPort} (--pg-port) is not free`),
      });
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  });

  it("without --pg-port a restart keeps the last start's port while it is free (a second node's db-url URL stays right)", async () => {
    const first = await start();
    const port = first.port;
    await first.stop();
    // Before: a new free port at every start.
    const again = await start();
    expect(again.port).toBe(port);
    await again.stop();
    // Taken meanwhile: another port, and a warning that says the URL changed.
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(port, "127.0.0.1", () => r()));
    const warnings: string[] = [];
    const logger = silentLogger.child({});
    logger.warn = ((_obj: unknown, msg?: string) => {
      warnings.push(String(msg));
    }) as typeof logger.warn;
    try {
      const moved = await startEmbeddedPostgres({ dataDir, logger });
      servers.push(moved);
      expect(moved.port).not.toBe(port);
      expect(warnings.join("\n")).toContain("previous port is taken");
      await moved.stop();
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  });
});
