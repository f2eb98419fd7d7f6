import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config/index.js";
import { expectConfigError, tempDir } from "./helpers.js";

const dir = tempDir();
afterAll(() => dir.cleanup());

describe("publish limits in the config", () => {
  it("are read from flags, KITEQ_* variables and cluster.toml keys", () => {
    expect(loadConfig(["--max-name-bytes", "100", "-maxProperties", "8"], {}).config.publishLimits).toEqual({
      maxNameBytes: 100,
      maxProperties: 8,
      maxPropertiesBytes: 65_536,
    });
    expect(
      loadConfig([], { KITEQ_MAX_PROPERTIES_BYTES: "1024", KITEQ_MAX_NAME_BYTES: "64" }).config.publishLimits,
    ).toEqual({ maxNameBytes: 64, maxProperties: 64, maxPropertiesBytes: 1024 });
    const file = dir.write(
      "cluster.toml",
      "[clusters.c]\nmaxNameBytes = 512\nmaxProperties = 0\nmaxPropertiesBytes = 0\n",
    );
    expect(loadConfig(["-configPath", file], {}).config.publishLimits).toEqual({
      maxNameBytes: 512,
      maxProperties: 0,
      maxPropertiesBytes: 0,
    });
  });

  it("refuses a name limit PostgreSQL's indexes could not take, and nonsense", () => {
    expectConfigError(() => loadConfig(["--max-name-bytes", "4096"], {}), "maxNameBytes", "1024");
    expectConfigError(() => loadConfig(["--max-name-bytes", "0"], {}), "maxNameBytes");
    expectConfigError(() => loadConfig([], { KITEQ_MAX_PROPERTIES: "-1" }), "maxProperties");
    expectConfigError(() => loadConfig([], { KITEQ_MAX_PROPERTIES_BYTES: "10MB" }), "maxPropertiesBytes");
  });
});
