/** What the CLI prints as text: control characters from client-chosen names made visible. */
import { describe, expect, it } from "vitest";
import { printExplanation } from "../../../src/cli/explain.js";
import { formatTable, oneLine, printable } from "../../../src/cli/output.js";

describe("printable", () => {
  it("shows ESC, BEL, CR and C1 controls as \\xNN, and keeps newlines, tabs and other text", () => {
    // Before: this cleared the screen and set the terminal's title.
    expect(printable("evil\u001b]0;pwned\u0007\u001b[2J")).toBe("evil\\x1b]0;pwned\\x07\\x1b[2J");
    expect(printable("a\rb\u009bc")).toBe("a\\x0db\\x9bc");
    expect(printable("line 1\nline\t2 ✓ ünïcödé")).toBe("line 1\nline\t2 ✓ ünïcödé");
  });
});

describe("one line per line", () => {
  const t = new Date("2026-12-03T00:00:00.000Z");
  const message = {
    messageId: "m1",
    topic: "trade",
    messageType: "pay\nforged line",
    publisherGroupId: "shop\r",
    commit: true,
    createdAt: t,
    storedAt: t,
    expiresAt: t,
    deliverLimit: 3,
    properties: [],
    bodySize: 4,
  };

  it("explain: a newline in a client-chosen name stays inside its line, as \\n", () => {
    const lines: string[] = [];
    printExplanation(
      {
        message,
        transaction: "none",
        pending: null,
        messageEvents: [
          { at: t, kind: "received", groupId: null, attempt: null, nodeId: "n", detail: "a\nb" },
        ],
        groups: [],
        now: t,
      },
      { out: (s) => lines.push(...s.split("\n")), err: () => {} },
    );
    expect(lines[0]).toBe(
      "message m1: topic trade, message type pay\\nforged line, from group shop\\r, 4 bytes",
    );
    expect(lines.some((l) => l.startsWith("forged line"))).toBe(false);
    expect(lines.at(-1)).toMatch(/received .* a\\nb$/);
  });

  it("explain: the message events' title is a line of its own, above the table's header", () => {
    const lines: string[] = [];
    printExplanation(
      {
        message: { ...message, messageType: "pay", publisherGroupId: "shop" },
        transaction: "none",
        pending: null,
        messageEvents: [{ at: t, kind: "received", groupId: null, attempt: null, nodeId: "n", detail: "" }],
        groups: [],
        now: t,
      },
      { out: (s) => lines.push(...s.split("\n")), err: () => {} },
    );
    // Before: "MESSAGE EVENTS AT         KIND ..." (the title glued to the first column's header).
    expect(lines.slice(-3)).toEqual([
      "message events:",
      "  AT                        KIND      ATTEMPT  NODE  DETAIL",
      "  2026-12-03T00:00:00.000Z  received  -        n     -",
    ]);
  });

  it("oneLine and table cells show newline, return and tab escaped", () => {
    expect(oneLine("a\nb\rc\td")).toBe("a\\nb\\rc\\td");
    expect(formatTable(["A", "B"], [["x\ny", "z"]])).toBe("A     B\nx\\ny  z");
  });
});

describe("tables", () => {
  it("a control character in a cell keeps the columns aligned (escaped before they are measured)", () => {
    const table = formatTable(
      ["GROUP", "TOPIC", "TYPE"],
      [
        ["a\u001bb", "t1", "direct"],
        ["plain", "t2", "fanout"],
      ],
    );
    const lines = table.split("\n");
    // Before: the ESC was escaped after padding, three characters wider than measured.
    expect(lines).toEqual(["GROUP   TOPIC  TYPE", "a\\x1bb  t1     direct", "plain   t2     fanout"]);
    expect(printable(table)).toBe(table);
  });
});
