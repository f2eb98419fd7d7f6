/**
 * As root, the embedded PostgreSQL runs as `postgres`: a data directory it cannot reach is
 * placed elsewhere and linked. A --data-dir the operator made 0700 was turned 0755 on the way,
 * without a word (an operator walkthrough); one this start makes itself is opened as before.
 */
import { mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { placeDataDir, postgresUserIds } from "../../src/store/embedded-place.js";
import { ROOT } from "../support/built-src.js";
import { removePlacedDataDirs } from "../support/placed-dirs.js";

describe("placing the embedded data directory as root", () => {
  let base: string;
  beforeAll(async () => {
    await mkdir(path.join(ROOT, ".tmp"), { recursive: true });
    base = await mkdtemp(path.join(ROOT, ".tmp", "data-dir-mode-"));
  });
  afterAll(async () => {
    await removePlacedDataDirs(base);
    await rm(base, { recursive: true, force: true });
  });

  it("leaves the mode of a --data-dir the operator made, and opens one it makes itself", async () => {
    if (process.getuid?.() !== 0)
      throw new Error("this test places directories as root (CI and this machine run as root)");
    const ids = postgresUserIds(silentLogger);
    const secret = path.join(base, "secret");
    await mkdir(secret, { mode: 0o700 });
    await placeDataDir(path.join(secret, "pg"), ids, silentLogger);
    // Before: 0755.
    expect((await stat(secret)).mode & 0o777).toBe(0o700);
    const fresh = path.join(base, "fresh");
    await placeDataDir(path.join(fresh, "pg"), ids, silentLogger);
    expect((await stat(fresh)).mode & 0o777).toBe(0o755);
  });
});
