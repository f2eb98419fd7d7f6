import { describe, expect, it } from "vitest";
import { shardOf } from "../../../src/store/shard-hash.js";
import { isUnreachable, SHARD_DOWN_MS, ShardHealth, splitByShard } from "../../../src/store/shards.js";

describe("shard health", () => {
  it("takes connection failures for down, data and lock errors not", () => {
    expect(isUnreachable(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))).toBe(
      true,
    );
    expect(isUnreachable(Object.assign(new Error("terminating"), { code: "57P01" }))).toBe(true);
    expect(isUnreachable(Object.assign(new Error("broken"), { code: "08006" }))).toBe(true);
    expect(isUnreachable(Object.assign(new Error("too many"), { code: "53300" }))).toBe(true);
    expect(isUnreachable(Object.assign(new Error("bad row"), { code: "22P02" }))).toBe(false);
    expect(isUnreachable(Object.assign(new Error("deadlock"), { code: "40P01" }))).toBe(false);
    expect(isUnreachable(Object.assign(new Error("timeout"), { code: "57014" }))).toBe(false);
  });

  it("is down for SHARD_DOWN_MS after a connection failure, then tried; up after a success", () => {
    const h = new ShardHealth(2, "pg-c:5432/kq");
    expect(h.isDown(1000)).toBe(false);
    expect(h.failed(Object.assign(new Error("bad"), { code: "23505" }), 1000)).toBe(false);
    expect(h.unhealthy).toBe(false);
    expect(h.failed(new Error("connect ECONNREFUSED 127.0.0.1:5432"), 1000)).toBe(true);
    expect(h.isDown(1000 + SHARD_DOWN_MS - 1)).toBe(true);
    expect(h.isDown(1000 + SHARD_DOWN_MS)).toBe(false);
    expect(h.unhealthy).toBe(true);
    expect(h.refusal()).toBe("shard 2 (pg-c:5432/kq) is down: connect ECONNREFUSED 127.0.0.1:5432");
    h.up();
    expect(h.unhealthy).toBe(false);
    expect(h.isDown(1000)).toBe(false);
  });

  it("splits a batch by shard, keeping the order within each", () => {
    const ids = Array.from({ length: 50 }, (_, i) => i.toString(16).padStart(32, "0"));
    const parts = splitByShard(ids, 3, (id) => id);
    expect(parts.flat().sort()).toEqual([...ids].sort());
    parts.forEach((part, shard) => {
      for (const id of part) expect(shardOf(id, 3)).toBe(shard);
      expect(part).toEqual(ids.filter((id) => shardOf(id, 3) === shard));
    });
  });
});
