/**
 * A CLI command's whole output reaches a pipe. main() ended with process.exit() as soon as the
 * command returned, before stdout had drained into the pipe: `history ... --json | jq` got the
 * first 64 KiB (a pipe's buffer) of a 2.4 MB answer, exit code 0, nothing on stderr.
 */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType } from "../../src/binding/binding.js";
import { bind } from "../support/bindings.js";
import { cliArgs, ROOT } from "../support/built-src.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

describe("e2e: CLI output into a pipe", () => {
  let db: TestDatabase;
  const GROUPS = 1500;

  beforeAll(async () => {
    db = await createTestDatabase();
    const pad = "x".repeat(100);
    for (let i = 0; i < GROUPS; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) =>
          bind(db.pool, {
            groupId: `g${i + j}-${pad}`,
            topic: "t",
            messageType: "*",
            bindType: BindType.Fanout,
          }),
        ),
      );
    }
  });
  afterAll(async () => db?.drop());

  it("bind list --json of 1,500 bindings (about 300 kB) arrives whole through a slow reader", async () => {
    // A reader slower than the writer (as `| jq` on a busy machine): the pipe fills up first.
    const command = `${[
      process.execPath,
      ...cliArgs(["bind", "list", "--json", "--db", db.url, "--admin", "-1"]),
    ]
      .map((a) => `'${a.replace(/'/g, "'\\''")}'`)
      .join(" ")} | (sleep 1; cat)`;
    const shell = spawn("sh", ["-c", command], {
      cwd: ROOT,
      env: { ...process.env, VITEST: undefined },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const chunks: Buffer[] = [];
    shell.stdout.on("data", (c: Buffer) => chunks.push(c));
    const code = await new Promise<number | null>((resolve) => shell.once("close", (c) => resolve(c)));
    expect(code).toBe(0);
    const text = Buffer.concat(chunks).toString("utf8");
    // Before: 65,536 bytes, cut mid-string.
    expect(text.length).toBeGreaterThan(200_000);
    expect(JSON.parse(text) as unknown[]).toHaveLength(GROUPS);
  });
});
