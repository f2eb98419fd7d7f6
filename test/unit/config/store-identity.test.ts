import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { storeIdentity } from "../../../src/config/store-identity.js";

const db = (...urls: string[]) => storeIdentity({ databaseUrls: urls, dataDir: "unused" });
const dir = mkdtempSync(path.join(tmpdir(), "kq-store-id-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("storeIdentity", () => {
  it("one database whatever the credentials, options or host case; another database differs", () => {
    const a = db("postgres://kq:secret@DB.example:5432/kiteq");
    expect(db("postgresql://other:pw@db.example/kiteq?sslmode=require")).toBe(a);
    expect(db("postgres://kq:secret@db.example:5433/kiteq")).not.toBe(a);
    expect(db("postgres://kq:secret@db.example:5432/kiteq2")).not.toBe(a);
    expect(db("postgres://kq:secret@db.example:5432/kiteq", "postgres://kq@db2/kiteq")).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(a).not.toContain("secret");
  });

  it("a multi-host URL (failover) is named without its user info", () => {
    expect(db("postgres://u:pw@h1:5432,h2:5432/kiteq")).toBe(db("postgres://v@h1:5432,h2:5432/kiteq"));
  });

  it("the embedded store of a data directory, by its real path (a symlinked folder is the same store)", () => {
    const real = path.join(dir, "real");
    mkdirSync(path.join(real, "pg"), { recursive: true });
    symlinkSync(real, path.join(dir, "link"));
    const id = storeIdentity({ databaseUrls: [], dataDir: real });
    expect(storeIdentity({ databaseUrls: [], dataDir: path.join(dir, "link") })).toBe(id);
    expect(storeIdentity({ databaseUrls: [], dataDir: path.join(dir, "elsewhere") })).not.toBe(id);
    expect(db("postgres://h/kiteq")).not.toBe(id);
  });
});
