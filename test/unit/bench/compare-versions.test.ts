import { describe, expect, it } from "vitest";
import { enginesCaveat, installedPackage, satisfiesRange } from "../../../src/bench/compare/versions.js";

describe("satisfiesRange (engines.node)", () => {
  it("checks >=, <, ^, ~ and || ranges", () => {
    expect(satisfiesRange("v20.20.2", ">=22.12.0")).toBe(false);
    expect(satisfiesRange("v22.18.0", ">=22.18.0")).toBe(true);
    expect(satisfiesRange("v20.20.2", ">=14.0.0")).toBe(true);
    expect(satisfiesRange("v20.20.2", ">=18 <21")).toBe(true);
    expect(satisfiesRange("v21.0.0", ">=18 <21")).toBe(false);
    expect(satisfiesRange("v20.20.2", "^18.0.0 || ^20.0.0")).toBe(true);
    expect(satisfiesRange("v22.1.0", "^18.0.0 || ^20.0.0")).toBe(false);
    expect(satisfiesRange("v20.20.2", "~20.20.0")).toBe(true);
    expect(satisfiesRange("v20.21.0", "~20.20.0")).toBe(false);
    expect(satisfiesRange("v20.20.2", "20.x")).toBe(true);
    expect(satisfiesRange("v20.20.2", "*")).toBe(true);
  });

  it("does not guess at ranges it cannot read", () => {
    expect(satisfiesRange("v20.20.2", "20 - 22")).toBeUndefined();
    expect(satisfiesRange("v20.20.2", "latest")).toBeUndefined();
  });
});

describe("enginesCaveat", () => {
  const pkg = { name: "pg-boss", version: "12.38.0", enginesNode: ">=22.12.0" };

  it("names the package, its range and the running Node.js when the range excludes it", () => {
    expect(enginesCaveat(pkg, "v20.20.2")).toBe(
      'caveat: pg-boss 12.38.0 declares engines.node ">=22.12.0", which excludes this Node.js v20.20.2; ' +
        "it is run here anyway (exactly-once is checked in every phase)",
    );
  });

  it("is silent when the range includes it or there is none", () => {
    expect(enginesCaveat(pkg, "v22.12.0")).toBeUndefined();
    expect(enginesCaveat({ ...pkg, enginesNode: undefined }, "v20.20.2")).toBeUndefined();
  });

  it("reads the installed release, not a label", () => {
    const p = installedPackage("pg-boss");
    expect(p.name).toBe("pg-boss");
    expect(p.version).toMatch(/^\d+\.\d+\.\d+/);
  });
});
