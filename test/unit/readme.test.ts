import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { EVENT_KINDS } from "../../src/store/event-kinds.js";

describe("README", () => {
  it("documents every history kind, in the order of EVENT_KINDS", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const table = readme.slice(
      readme.indexOf("<!-- event-kinds:start -->"),
      readme.indexOf("<!-- event-kinds:end -->"),
    );
    const kinds = [...table.matchAll(/^\| `([a-z_]+)` *\|/gm)].map((m) => m[1]);
    expect(kinds).toEqual([...EVENT_KINDS]);
  });

  it("gives the two quick-start commands", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    expect(readme).toContain("    npm install && npm start\n");
    expect(readme).toContain("    npm test\n");
  });
});
