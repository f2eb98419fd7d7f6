/**
 * Which broker the CLI's read commands may read through: at the default admin address only one
 * that serves the store the command names (before, `bind list --db A` printed the bindings of
 * whatever broker answered on 127.0.0.1:13801; found when a broker of another checkout ran on
 * this machine during the CLI tests); at an address given on purpose, that broker.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AdminServer } from "../../../src/admin/server.js";
import { findAdminApi } from "../../../src/cli/admin-client.js";
import { loadConfig } from "../../../src/config/load.js";
import { storeIdentity } from "../../../src/config/store-identity.js";
import { createTestDatabase, type TestDatabase } from "../../support/db.js";
import { startTestAdminServer } from "../../support/metrics-source.js";

describe("CLI: reading through a broker's admin API", () => {
  let db: TestDatabase;
  let admin: AdminServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    admin = await startTestAdminServer(db.pool, {
      storeId: storeIdentity({ databaseUrls: [db.url], dataDir: "unused" }),
    });
  }, 60_000);
  afterAll(async () => {
    await admin?.close();
    await db?.drop();
  });

  /** The CLI's config for `--db url`, its admin address given (`given`) or taken as the default. */
  const configFor = (url: string, given: boolean) => {
    const { config } = loadConfig(
      ["--db", url, "--admin", `127.0.0.1:${admin.address.port}`],
      {},
      { serving: false },
    );
    return { ...config, adminGiven: given };
  };

  it("the default address: the broker is read only when it serves the command's store", async () => {
    const same = await findAdminApi({ config: configFor(db.url, false) });
    expect(same.api?.base).toBe(`http://127.0.0.1:${admin.address.port}`);
    const other = await findAdminApi({ config: configFor(`${db.url}_other`, false) });
    expect(other).toEqual({
      api: null,
      why: `the broker at http://127.0.0.1:${admin.address.port} serves another store than this command's`,
    });
  });

  it("an address given on purpose: read through it, with a note when --db names another database", async () => {
    const other = await findAdminApi({ config: configFor(`${db.url}_other`, true) });
    expect(other.api).not.toBeNull();
    expect("note" in other ? other.note : undefined).toMatch(/serves another database than --db names/);
    const same = await findAdminApi({ config: configFor(db.url, true) });
    expect("note" in same ? same.note : undefined).toBeUndefined();
  });
});
