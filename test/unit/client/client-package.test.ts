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
