/** `history --group` writes its table page by page: later pages stay in the first page's columns. */
import { describe, expect, it } from "vitest";
import { tableWriter } from "../../../src/cli/output.js";

describe("tableWriter", () => {
  it("a column given a minimum width keeps later pages' wider values in line", () => {
    const lines: string[] = [];
    const out = { out: (t: string) => lines.push(...t.split("\n")), err: () => undefined };
    const table = tableWriter(["KIND", "MESSAGE"], out, ["dead_lettered".length]);
    table.rows([["acked", "m1"]]);
    table.rows([["dead_lettered", "m2"]]);
    // Before: KIND was 5 wide from the first page, and m2 stood 8 columns right of m1.
    expect(lines).toEqual(["KIND           MESSAGE", "acked          m1", "dead_lettered  m2"]);
  });
});
