import { describe, expect, it } from "vitest";
import { CommandArgs, UsageError } from "../../../src/cli/args.js";

describe("CommandArgs: switches", () => {
  const args = (flags: Record<string, string>) => new CommandArgs("history", flags, ["json", "verbose"]);

  it("--json=false is off (it was taken as --json), --json and --json=true on", () => {
    expect(args({ json: "false" }).has("json")).toBe(false);
    expect(args({ json: "true" }).has("json")).toBe(true);
    expect(args({}).has("json")).toBe(false);
  });

  it("a switch given anything but true or false is refused, naming it", () => {
    expect(() => args({ verbose: "maybe" }).has("verbose")).toThrow(UsageError);
    expect(() => args({ verbose: "maybe" }).has("verbose")).toThrow(
      'history: --verbose must be true or false, got "maybe"',
    );
  });
});
