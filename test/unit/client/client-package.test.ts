/**
 * packages/client (`kiteq-pg-client`) declares the SDK's dependencies itself: its version and
 * ranges must be the broker package's, or the two would ship the same code against different
 * libraries. (test/e2e/sdk-pack.test.ts checks that it declares every package its build imports.)
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../../..");
interface Manifest {
  version: string;
  dependencies: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
}
const read = (file: string): Manifest => JSON.parse(readFileSync(path.join(ROOT, file), "utf8")) as Manifest;

describe("packages/client/package.json", () => {
  it("has the broker package's version and the same range for each dependency", () => {
    const broker = read("package.json");
    const client = read("packages/client/package.json");
    expect(client.version).toBe(broker.version);
    for (const [name, range] of Object.entries(client.dependencies)) {
      expect(`${name}@${range}`).toBe(`${name}@${broker.dependencies[name]}`);
    }
  });
});

describe("package exports", () => {
  // Only an "import" condition: require() of the SDK from a CommonJS project failed with
  // ERR_PACKAGE_PATH_NOT_EXPORTED ('No "exports" main defined'), although Node >= 20.19 loads
  // these ES modules with require() and TypeScript (module NodeNext) compiled the require.
  it.each(["package.json", "packages/client/package.json"])(
    "%s: every entry point that has an import condition also has default (require)",
    (file) => {
      for (const [entry, target] of Object.entries(read(file).exports)) {
        if (typeof target === "string" || target.import === undefined) continue;
        expect(`${entry} default ${target.default}`).toBe(`${entry} default ${target.import}`);
      }
    },
  );
});
