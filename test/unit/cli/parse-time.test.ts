/** Times of the CLI and the admin API (`--since`, `since=`): what parseTime takes and refuses. */
import { describe, expect, it } from "vitest";
import { parseTime } from "../../../src/cli/args.js";

const now = new Date("2026-12-02T12:00:00.000Z");
const iso = (text: string) => parseTime(text, now)?.toISOString();

describe("parseTime", () => {
  it("durations ago, now, dates and date-times (UTC unless an offset is given)", () => {
    expect(iso("now")).toBe("2026-12-02T12:00:00.000Z");
    expect(iso("90s")).toBe("2026-12-02T11:58:30.000Z");
    expect(iso("2h")).toBe("2026-12-02T10:00:00.000Z");
    expect(iso("7d")).toBe("2026-11-25T12:00:00.000Z");
    expect(iso("2026-12-01")).toBe("2026-12-01T00:00:00.000Z");
    // Before: read in the process's time zone (05:00Z with TZ=America/New_York).
    expect(iso("2026-12-02T00:00")).toBe("2026-12-02T00:00:00.000Z");
    expect(iso("2026-12-02 00:00:30")).toBe("2026-12-02T00:00:30.000Z");
    expect(iso("2026-12-02T00:00:00+01:00")).toBe("2026-12-01T23:00:00.000Z");
    expect(iso("2026-12-02T00:00:00Z")).toBe("2026-12-02T00:00:00.000Z");
  });

  it("refuses days that do not exist and times outside 1970..9999 (before: rolled over, or a 500)", () => {
    expect(iso("2026-02-31")).toBeUndefined();
    expect(iso("2026-13-01")).toBeUndefined();
    expect(iso("2026-02-29")).toBeUndefined();
    expect(iso("2028-02-29")).toBe("2028-02-29T00:00:00.000Z");
    expect(iso("99999999d")).toBeUndefined();
    expect(iso("9999999999d")).toBeUndefined();
    expect(iso("99999999999999999999s")).toBeUndefined();
    expect(iso("yesterday")).toBeUndefined();
  });
});
