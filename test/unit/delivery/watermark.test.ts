import { describe, expect, it } from "vitest";
import { DEFAULT_WATERMARK, KITEQ_MAX_WATERMARK } from "../../../src/binding/binding.js";
import { loadConfig } from "../../../src/config/load.js";
import { effectiveWatermark } from "../../../src/delivery/local-group.js";

describe("a group's watermark under --max-watermark", () => {
  const bindings = [
    { groupId: "g", watermark: 20_000 },
    { groupId: "g", watermark: 500 },
    { groupId: "slow", watermark: 300 },
  ];

  it("caps at KiteQ's 6,000 by default and lets a higher one through with 0", () => {
    expect(KITEQ_MAX_WATERMARK).toBe(6000);
    expect(effectiveWatermark(bindings, "g", KITEQ_MAX_WATERMARK)).toBe(6000);
    expect(effectiveWatermark(bindings, "g", 0)).toBe(20_000);
    expect(effectiveWatermark(bindings, "g", 10_000)).toBe(10_000);
    expect(effectiveWatermark(bindings, "slow", 0)).toBe(300);
    expect(effectiveWatermark(bindings, "slow", 100)).toBe(100);
  });

  it("reads --max-watermark (default 6000, 0 allowed) and refuses a negative one", () => {
    expect(loadConfig([], {}).config.maxWatermark).toBe(6000);
    expect(loadConfig(["--max-watermark", "0"], {}).config.maxWatermark).toBe(0);
    expect(loadConfig([], { KITEQ_MAX_WATERMARK: "20000" }).config.maxWatermark).toBe(20_000);
    expect(() => loadConfig(["--max-watermark", "-1"], {})).toThrow(/max-watermark/);
  });

  it("uses the default for a group without bindings", () => {
    expect(effectiveWatermark(bindings, "none", 0)).toBe(DEFAULT_WATERMARK);
  });
});
