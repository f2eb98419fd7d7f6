import { describe, expect, it } from "vitest";
import { MAX_FEEDBACK_CHARS, storableFeedback } from "../../../src/delivery/feedback.js";

describe("storableFeedback", () => {
  it("keeps ordinary text, shows a NUL as \\x00, replaces a lone surrogate", () => {
    expect(storableFeedback("handler threw: boom ✓")).toBe("handler threw: boom ✓");
    expect(storableFeedback("a\u0000b")).toBe("a\\x00b");
    expect(storableFeedback("a\ud800b\u{1f600}")).toBe("a\ufffdb\u{1f600}");
  });

  it("cuts long feedback and says how long it was (a pair split by the cut is replaced)", () => {
    const long = storableFeedback("x".repeat(2_000_000));
    expect(long).toBe(`${"x".repeat(MAX_FEEDBACK_CHARS)}… (cut: 2000000 characters)`);
    const split = storableFeedback(`${"x".repeat(MAX_FEEDBACK_CHARS - 1)}\u{1f600}tail`);
    expect(split.startsWith(`${"x".repeat(MAX_FEEDBACK_CHARS - 1)}\ufffd…`)).toBe(true);
  });
});
