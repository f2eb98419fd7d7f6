import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { BROKER_NODE_FLAGS, missingNodeFlags } from "../../src/server/node-flags.js";

const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), "utf8");

// The flags are repeated where no TypeScript constant can reach (npm scripts, the image, the
// built CLI's shebang): they must not drift apart.
describe("broker Node.js flags", () => {
  it("npm start, npm run cli and npm run bench start node with them", () => {
    const scripts = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts;
    // Before: `npm run cli -- serve` (in the README's command table) warned of missing heap flags.
    for (const name of ["start", "cli", "bench"]) {
      expect(scripts[name]).toContain(`node ${BROKER_NODE_FLAGS.join(" ")} --import tsx`);
    }
  });

  it("the Docker image and the CLI's shebang use them", () => {
    expect(read("Dockerfile")).toContain(
      `ENTRYPOINT ["node", ${BROKER_NODE_FLAGS.map((f) => `"${f}"`).join(", ")},`,
    );
    expect(read("src/cli/main.ts").split("\n")[0]).toBe(
      `#!/usr/bin/env -S node ${BROKER_NODE_FLAGS.join(" ")}`,
    );
  });
});

describe("missingNodeFlags", () => {
  it("names the flags absent from execArgv, whatever their values", () => {
    expect(missingNodeFlags([])).toEqual([...BROKER_NODE_FLAGS]);
    expect(missingNodeFlags(["--initial-old-space-size=512", "--max-semi-space-size=64"])).toEqual([]);
    expect(missingNodeFlags(["--import", "tsx", "--max-semi-space-size=16"])).toEqual([
      "--initial-old-space-size=256",
    ]);
  });
});
