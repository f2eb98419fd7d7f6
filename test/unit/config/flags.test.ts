import { describe, expect, it } from "vitest";
import { loadConfig, parseFlags } from "../../../src/config/index.js";
import { expectConfigError } from "./helpers.js";

describe("parseFlags", () => {
  it("separates config flags, the caller's flags and positionals", () => {
    const parsed = parseFlags(
      ["serve", "-bind=:1", "--json", "msg-1", "--count", "3", "-clusterName", "c", "--", "-literal"],
      ["json", "count="],
    );
    expect(parsed.flags).toEqual({ bind: ":1", json: "true", count: "3", clusterName: "c" });
    expect(parsed.positionals).toEqual(["serve", "msg-1", "-literal"]);
    expect(parsed.configArgs).toEqual(["-bind=:1", "-clusterName=c"]);
  });

  it("gives configArgs that loadConfig accepts", () => {
    const { configArgs } = parseFlags(["publish", "--bind", "10.0.0.1:7", "trade"]);
    expect(loadConfig(configArgs, {}).config.bind).toEqual({ host: "10.0.0.1", port: 7 });
  });

  it("takes the next argument as a value even when it starts with a dash", () => {
    expect(parseFlags(["-pport", "-1"]).flags).toEqual({ admin: "-1" });
    expect(parseFlags(["--verbose=false"], ["verbose"]).flags).toEqual({ verbose: "false" });
  });

  it("treats a lone dash as a positional (stdin)", () => {
    expect(parseFlags(["-"]).positionals).toEqual(["-"]);
  });

  it("rejects unknown flags and a caller flag missing its value", () => {
    expectConfigError(() => parseFlags(["serve", "--jsn"], ["json"]), "--jsn", "unknown flag --jsn");
    expectConfigError(() => parseFlags(["--count"], ["count="]), "count", "flag --count needs a value");
  });
});
