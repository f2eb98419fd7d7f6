import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config/index.js";
import { tempDir } from "./helpers.js";

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

describe("shard labels and keyword-form targets", () => {
  it("labels a shard by hosts and database, never its credentials", async () => {
    const { shardLabel } = await import("../../../src/store/shards.js");
    expect(shardLabel("postgres://u:secret@h1:5432,h2:5433/kq?target_session_attrs=read-write")).toBe(
      "h1:5432,h2:5433/kq",
    );
    expect(shardLabel("host=db1,db2 port=5432 dbname=kiteq user=u password=secret")).toBe(
      "db1:5432,db2:5432/kiteq",
    );
  });

  it("takes a keyword-form value as one target (several: repeat --db)", () => {
    const k = "host=db1,db2 port=5432 dbname=kiteq user=u";
    expect(loadConfig(["--db", k], {}).config.databaseUrls).toEqual([k]);
    expect(loadConfig(["--db", k, "--db", "postgres://h/kq"], {}).config.databaseUrls).toEqual([
      k,
      "postgres://h/kq",
    ]);
  });
});

describe("db in cluster.toml: several URLs (shards)", () => {
  const dir = tempDir();
  afterAll(() => dir.cleanup());

  it("takes an array, or one string separated by spaces, in order", () => {
    const urls = ["postgres://a/kq", "postgres://b/kq", "postgresql://c:5433/kq"];
    const asArray = dir.write("array.toml", `[clusters.c]\ndb = ${JSON.stringify(urls)}\n`);
    expect(loadConfig(["--config", asArray], {}).config.databaseUrls).toEqual(urls);
    const asString = dir.write("string.toml", `[clusters.c]\ndb = "${urls.join(" ")}"\n`);
    expect(loadConfig(["--config", asString], {}).config.databaseUrls).toEqual(urls);
    const bad = dir.write("bad.toml", `[clusters.c]\ndb = ["postgres://a/kq", "mysql://b/kq"]\n`);
    expect(() => loadConfig(["--config", bad], {})).toThrow(/db/);
  });
});
