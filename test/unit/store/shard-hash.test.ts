import { describe, expect, it } from "vitest";
import { fnv1a32, shardOf } from "../../../src/store/shard-hash.js";

describe("shard hash (FNV-1a 32 over UTF-8, mod shard count)", () => {
  it("matches the published FNV-1a 32 test vectors", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });

  it("pins the shard of KiteQ message ids (changing these moves stored messages)", () => {
    const ids = [
      "00000000000000000000000000000000",
      "0123456789abcdef0123456789abcdef",
      "ffffffffffffffffffffffffffffffff",
      "6b69746571000000000000000000002a",
    ];
    const hashes = ids.map(fnv1a32);
    expect(hashes).toEqual(HASHES);
    expect(ids.map((id) => shardOf(id, 1))).toEqual([0, 0, 0, 0]);
    expect(ids.map((id) => shardOf(id, 2))).toEqual(HASHES.map((h) => h % 2));
    expect(ids.map((id) => shardOf(id, 3))).toEqual(HASHES.map((h) => h % 3));
    expect(ids.map((id) => shardOf(id, 4))).toEqual(HASHES.map((h) => h % 4));
  });

  it("hashes non-ASCII ids as their UTF-8 bytes", () => {
    for (const s of ["é", "日本", "a😀b", "\ud800x"]) {
      const bytes = Buffer.from(s, "utf8");
      let h = 0x811c9dc5;
      for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
      expect(fnv1a32(s)).toBe(h >>> 0);
    }
  });

  it("spreads random hex ids evenly over 3 shards", () => {
    const counts = [0, 0, 0];
    for (let i = 0; i < 30_000; i++) {
      const id = (i * 2654435761).toString(16).padStart(32, "0");
      counts[shardOf(id, 3)]!++;
    }
    for (const c of counts) expect(c).toBeGreaterThan(9000);
  });
});

// Pinned: the values this module gave when shards were introduced.
const HASHES = [0xf0c86445, 0x86d04db5, 0xed928645, 0x7ea0a10b];
