/**
 * `consume` with static brokers (--brokers/--host): a group without bindings receives nothing,
 * and before only "received 0 of 1 message(s) within 5 s" was printed; now, when the broker's
 * admin API shows the group has no binding, consume says so and how to bind it. And --topic,
 * which binds nothing there, is said in one line instead of a KQ_BINDINGS_NOT_APPLIED process
 * warning.
 */

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { AdminServer } from "../../../src/admin/server.js";
import { BIND_VERSION, createBinding } from "../../../src/binding/binding.js";
import { CommandArgs } from "../../../src/cli/args.js";
import { consumeCommand } from "../../../src/cli/client.js";
import { loadConfig } from "../../../src/config/load.js";
import { storeIdentity } from "../../../src/config/store-identity.js";
import { silentLogger } from "../../../src/log.js";
import { upsertBinding } from "../../../src/store/bindings.js";
import { createTestDatabase, type TestDatabase } from "../../support/db.js";
import { startFakeBroker } from "../../support/fake-broker.js";
import { startTestAdminServer } from "../../support/metrics-source.js";

describe("CLI consume with static brokers", () => {
  let db: TestDatabase;
  let admin: AdminServer;
  let broker: { port: number; close(): void };

  beforeAll(async () => {
    db = await createTestDatabase();
    admin = await startTestAdminServer(db.pool, {
      storeId: storeIdentity({ databaseUrls: [db.url], dataDir: "unused" }),
    });
    broker = await startFakeBroker();
  }, 60_000);
  afterAll(async () => {
    broker?.close();
    await admin?.close();
    await db?.drop();
  });

  /** Run `consume` with `flags` (--brokers, --count 1, --timeout 1 added); its exit code and stderr. */
  const consume = async (flags: Record<string, string>) => {
    const { config } = loadConfig(
      ["--db", db.url, "--admin", `127.0.0.1:${admin.address.port}`],
      {},
      { serving: false },
    );
    const stderr: string[] = [];
    const stdout: string[] = [];
    const args = new CommandArgs(
      "consume",
      { brokers: `127.0.0.1:${broker.port}`, count: "1", timeout: "1", ...flags },
      consumeCommand.flags,
    );
    const code = await consumeCommand.run({
      config,
      log: silentLogger,
      args,
      out: { out: (t) => stdout.push(t), err: (t) => stderr.push(t) },
    });
    return { code, stderr, stdout };
  };

  it("a group without bindings: says so and how to bind it", async () => {
    const { code, stderr, stdout } = await consume({ group: "billng" });
    expect(code).toBe(1);
    expect(stdout).toEqual([]);
    expect(stderr).toEqual([
      "kiteq-pg: received 0 of 1 message(s) within 1 s",
      `kiteq-pg: group billng has no bindings (the broker at http://127.0.0.1:${admin.address.port} lists none), so no message is pushed to it: bind it with kiteq-pg bind add --group billng --topic T --message-type M`,
    ]);
  });

  it("--topic: one line saying it binds nothing, no process warning; a bound group gets no unbound note", async () => {
    await upsertBinding(
      db.pool,
      createBinding({
        groupId: "billing",
        topic: "trade",
        messageType: "pay",
        bindType: 0,
        version: BIND_VERSION,
        watermark: 100,
        persistent: true,
      }),
      "cli",
      new Date(),
    );
    const warn = vi.spyOn(process, "emitWarning");
    try {
      const { code, stderr } = await consume({ group: "billing", topic: "trade", "message-type": "pay" });
      expect(code).toBe(1);
      expect(warn).not.toHaveBeenCalled();
      expect(stderr).toEqual([
        "kiteq-pg: --topic binds nothing with --brokers/--host (the broker's own bindings apply): to bind group billing, run kiteq-pg bind add --group billing --topic trade --message-type pay",
        "kiteq-pg: received 0 of 1 message(s) within 1 s",
      ]);
    } finally {
      warn.mockRestore();
    }
  });
});
