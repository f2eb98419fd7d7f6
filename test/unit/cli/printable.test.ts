/** What the CLI prints as text: control characters from client-chosen names made visible. */
import { describe, expect, it } from "vitest";
import { printable } from "../../../src/cli/output.js";

describe("printable", () => {
  it("shows ESC, BEL, CR and C1 controls as \\xNN, and keeps newlines, tabs and other text", () => {
    // Before: this cleared the screen and set the terminal's title.
    expect(printable("evil\u001b]0;pwned\u0007\u001b[2J")).toBe("evil\\x1b]0;pwned\\x07\\x1b[2J");
    expect(printable("a\rb\u009bc")).toBe("a\\x0db\\x9bc");
    expect(printable("line 1\nline\t2 ✓ ünïcödé")).toBe("line 1\nline\t2 ✓ ünïcödé");
  });
});
