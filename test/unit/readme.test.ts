import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { e2eSuite } from "../../src/bench/e2e.js";
import { SUITE_NAMES } from "../../src/bench/main.js";
import { BindType } from "../../src/binding/binding.js";
import { parseRegistryFile } from "../../src/binding/registry-file.js";
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

  it("names every bench suite, and e2e's group counts as its defaults", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const listed = [...readme.matchAll(/^ {4}npm run bench -- (\w+) /gm)].map((m) => m[1]);
    expect(new Set(listed)).toEqual(new Set(SUITE_NAMES));
    expect(readme).toContain(`| \`bench ${SUITE_NAMES.join("\\|")} [flags]\` |`);
    // Before: bench --help said 1/4 groups (the fixed-rate run's), the README 1/4/8.
    const groups = String(e2eSuite.flags.groups?.default).replaceAll(",", "/");
    const rateGroups = String(e2eSuite.flags["rate-groups"]?.default).replaceAll(",", "/");
    expect(e2eSuite.summary).toContain(
      `with ${groups} groups and latency at a fixed rate with ${rateGroups};`,
    );
    expect(readme).toMatch(
      new RegExp(
        `npm run bench -- e2e +# publish -> deliver -> ack, ${groups} groups \\(latency at a fixed rate:\\s+# ${rateGroups}\\)`,
      ),
    );
  });

  it("shows a --registry-file example the broker's parser reads", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const section = readme.slice(
      readme.indexOf("<!-- registry-file:start -->"),
      readme.indexOf("<!-- registry-file:end -->"),
    );
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    expect(yaml).toBeDefined();
    const parsed = parseRegistryFile(yaml ?? "");
    expect(parsed.brokers).toEqual([{ address: "127.0.0.1:13800", topics: ["trade"] }]);
    expect(parsed.refused).toEqual([]);
    expect(parsed.bindings.map((b) => [b.groupId, b.topic, b.messageType, b.bindType])).toEqual([
      ["s-mts-test", "trade", "pay-succ", BindType.Direct],
      ["s-other", "trade", "pay-succ", BindType.Direct],
      ["s-audit", "trade", "*", BindType.Fanout],
    ]);
  });

  it("gives the two quick-start commands", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    expect(readme).toContain("    npm install && npm start\n");
    expect(readme).toContain("    npm test\n");
  });
});
