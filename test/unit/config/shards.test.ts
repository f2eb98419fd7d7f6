import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config/index.js";

describe("--db with several URLs (shards)", () => {
  it("takes URLs separated by whitespace, or --db repeated, in order; commas stay inside a URL", () => {
    const a = "postgres://u:p@h1:5432/kq?application_name=a,b";
    const b = "postgres://u:p@h3/kq";
    const c = "postgresql://h4/kq";
    expect(loadConfig(["--db", `${a}  ${b}\n${c}`], {}).config.databaseUrls).toEqual([a, b, c]);
    expect(loadConfig(["--db", a, "--db", b, "-db", c], {}).config.databaseUrls).toEqual([a, b, c]);
    const one = loadConfig(["--db", a], {}).config;
    expect(one.databaseUrls).toEqual([a]);
    expect(one.databaseUrl).toBe(a);
    expect(loadConfig([], { KITEQ_DB_URL: `${b} ${c}` }).config.databaseUrls).toEqual([b, c]);
  });

  it("refuses a list with one bad URL", () => {
    expect(() => loadConfig(["--db", "postgres://h/kq mysql://h/kq"], {})).toThrow(/postgres/);
  });
});
