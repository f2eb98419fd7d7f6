import { describe, expect, it } from "vitest";
import { lastLines } from "../../../src/store/embedded.js";

describe("lastLines (what an operator reads of PostgreSQL's output)", () => {
  const out = [
    "2026-12-04 16:55:55.401 UTC [17762] LOG:  database system was interrupted; last known up at 2026-12-04 16:55:53 UTC",
    "2026-12-04 16:55:55.465 UTC [17762] LOG:  database system was not properly shut down; automatic recovery in progress",
    "",
    '2026-12-04 16:55:55.470 UTC [17762] FATAL:  could not open file "base/1/1259": Permission denied',
    "",
  ].join("\n");

  it("keeps whole lines from the end that fit, never a line cut in the middle", () => {
    // Before: output.slice(-400), which began ":53 UTC\n2026-12-04 16:55:55.465 UTC ...".
    const tail = lastLines(out, 250);
    expect(tail.split("\n")).toEqual([
      "2026-12-04 16:55:55.465 UTC [17762] LOG:  database system was not properly shut down; automatic recovery in progress",
      '2026-12-04 16:55:55.470 UTC [17762] FATAL:  could not open file "base/1/1259": Permission denied',
    ]);
    expect(tail.length).toBeLessThanOrEqual(250);
    expect(lastLines(out, 10_000).split("\n")).toHaveLength(3);
  });

  it("a last line longer than the bound alone is cut at its start, marked", () => {
    const tail = lastLines(out, 40);
    expect(tail.startsWith("…")).toBe(true);
    expect(tail.endsWith("Permission denied")).toBe(true);
    expect(tail.length).toBe(40);
    expect(lastLines("", 100)).toBe("");
  });
});
