import { describe, expect, it } from "vitest";
import { buildHeader } from "../../../src/client/connection.js";
import type { Header } from "../../../src/protocol/messages.js";
import { DEFAULT_PUBLISH_LIMITS } from "../../../src/publish/limits.js";
import { validatePublish } from "../../../src/publish/validate.js";

const NOW_MS = Date.UTC(2026, 0, 15, 12, 0, 0);
const NOW_SEC = NOW_MS / 1000;
const header = (h: Partial<Header> = {}) =>
  buildHeader({ topic: "trade", messageType: "pay", groupId: "p1", createTime: NOW_SEC, ...h });
const validate = (h: Partial<Header>, limits = DEFAULT_PUBLISH_LIMITS) =>
  validatePublish(header(h), () => true, NOW_MS, limits);
const refusal = (h: Partial<Header>, limits = DEFAULT_PUBLISH_LIMITS) => {
  const r = validate(h, limits);
  if (r.ok) throw new Error("expected a refusal");
  return { field: r.field, reason: r.reason };
};

describe("validatePublish: strings", () => {
  it.each(["topic", "messageType", "groupId"] as const)("refuses a NUL byte in %s, naming the field", (f) => {
    expect(refusal({ [f]: "a\u0000b" })).toEqual({ field: f, reason: `invalid ${f}: contains a NUL byte` });
  });

  it.each(["topic", "messageType", "groupId"] as const)(
    "refuses broken UTF-8 (a lone surrogate) in %s",
    (f) => {
      expect(refusal({ [f]: "a\ud800b" })).toEqual({ field: f, reason: `invalid ${f}: not valid UTF-8` });
      // A proper surrogate pair (an emoji) is fine.
      expect(validate({ [f]: "a\u{1f600}b" }).ok).toBe(true);
    },
  );

  it("refuses a NUL in the messageId (it is not 32 hexadecimal characters)", () => {
    expect(refusal({ messageId: `${"a".repeat(31)}\u0000` }).field).toBe("messageId");
  });

  it("bounds topic, messageType and groupId by UTF-8 bytes, not characters", () => {
    expect(validate({ messageType: "x".repeat(255) }).ok).toBe(true);
    expect(refusal({ messageType: "x".repeat(256) })).toEqual({
      field: "messageType",
      reason: "invalid messageType: 256 bytes, at most 255 allowed",
    });
    // 128 two-byte characters = 256 bytes.
    expect(refusal({ groupId: "é".repeat(128) }).reason).toBe(
      "invalid groupId: 256 bytes, at most 255 allowed",
    );
    expect(validate({ groupId: "é".repeat(127) }).ok).toBe(true);
    expect(refusal({ topic: "t".repeat(1024 * 1024) }).field).toBe("topic");
    expect(refusal({ topic: "t".repeat(11) }, { ...DEFAULT_PUBLISH_LIMITS, maxNameBytes: 10 }).field).toBe(
      "topic",
    );
  });

  it("refuses a NUL or broken UTF-8 in a property key or value, naming which", () => {
    const props = (key: string, value: string) => [
      { key: "ok", value: "fine" },
      { key, value },
    ];
    expect(refusal({ properties: props("k\u0000", "v") })).toEqual({
      field: "properties[1].key",
      reason: "invalid properties[1].key: contains a NUL byte",
    });
    expect(refusal({ properties: props("trace", "v\u0000") })).toEqual({
      field: 'properties["trace"].value',
      reason: 'invalid properties["trace"].value: contains a NUL byte',
    });
    expect(refusal({ properties: props("trace", "\udc00") }).reason).toMatch(/not valid UTF-8/);
  });

  it("bounds the number of properties and their total size", () => {
    const many = (n: number, size = 1) =>
      Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: "v".repeat(size) }));
    expect(validate({ properties: many(64) }).ok).toBe(true);
    expect(refusal({ properties: many(65) })).toEqual({
      field: "properties",
      reason: "invalid properties: 65 properties, at most 64 allowed",
    });
    // 32 x (3-byte key + 2,000 bytes) = 64,096 bytes: fits; 33 do not.
    expect(validate({ properties: many(32, 2000).map((p, i) => ({ ...p, key: `k${i + 10}` })) }).ok).toBe(
      true,
    );
    const big = refusal({ properties: many(34, 2000) });
    expect(big.field).toBe("properties");
    expect(big.reason).toMatch(/^invalid properties: \d+ bytes of keys and values, at most 65536 allowed$/);
    expect(refusal({ properties: many(2) }, { ...DEFAULT_PUBLISH_LIMITS, maxProperties: 1 }).field).toBe(
      "properties",
    );
  });
});

describe("validatePublish: times", () => {
  it("takes createTime 0 (unset) as the receive time, and a sane one as given", () => {
    const unset = validate({ createTime: 0 });
    expect(unset.ok && unset.header.createdAt.getTime()).toBe(NOW_MS);
    const given = validate({ createTime: NOW_SEC - 3600 });
    expect(given.ok && given.header.createdAt.getTime()).toBe(NOW_MS - 3_600_000);
  });

  it.each([
    ["negative", -1],
    ["before 2000", 946_684_799],
    ["milliseconds sent as seconds", NOW_MS],
    ["past Date's range", 8.64e12 + 1],
    ["more than a year ahead", NOW_SEC + 366 * 86_400 + 1],
    ["NaN", Number.NaN],
    ["fractional", NOW_SEC + 0.5],
  ])("refuses a createTime %s, naming createTime", (_what, createTime) => {
    const r = refusal({ createTime });
    expect(r.field).toBe("createTime");
    expect(r.reason).toMatch(/^invalid createTime /);
  });

  it("accepts createTime up to a year ahead (a producer's clock; the partition is the receive time)", () => {
    expect(validate({ createTime: NOW_SEC + 366 * 86_400 }).ok).toBe(true);
    expect(validate({ createTime: NOW_SEC + 10 * 86_400 }).ok).toBe(true);
    expect(validate({ createTime: 946_684_800 }).ok).toBe(true);
  });

  it("keeps KiteQ's expiredTime rules and refuses one that is not an integer", () => {
    expect(refusal({ expiredTime: NOW_SEC - 1 })).toMatchObject({ field: "expiredTime" });
    // This second: it would be stored already expired and never delivered (acked true before).
    expect(refusal({ expiredTime: NOW_SEC })).toEqual({
      field: "expiredTime",
      reason: `expired message (expiredTime ${NOW_SEC} <= now ${NOW_SEC})`,
    });
    expect(validate({ expiredTime: NOW_SEC + 1 }).ok).toBe(true);
    expect(refusal({ expiredTime: Number.NaN }).reason).toBe(
      "invalid expiredTime NaN: unix seconds expected",
    );
    expect(refusal({ expiredTime: Number.POSITIVE_INFINITY }).field).toBe("expiredTime");
    const week = NOW_MS + 7 * 24 * 3_600_000;
    for (const expiredTime of [-1, 0, -(2 ** 52), 2 ** 52]) {
      const r = validate({ expiredTime });
      expect(r.ok && r.header.expiresAt.getTime()).toBe(week);
    }
  });
});

describe("validatePublish: fly", () => {
  it("refuses an uncommitted fly message, as KiteQ (it was pushed at once and its rollback ignored)", () => {
    expect(refusal({ fly: true, commit: false })).toEqual({
      field: "fly",
      reason: "a fly message must be committed: send a two-phase message with fly false",
    });
    expect(validate({ fly: true, commit: true }).ok).toBe(true);
    expect(validate({ fly: false, commit: false }).ok).toBe(true);
  });
});
