import { describe, expect, it } from "vitest";
import { formatConfigError, isLoopbackHost, loadConfig } from "../../../src/config/index.js";
import { expectConfigError } from "./helpers.js";

const TOKEN = "0123456789abcdef-token";

describe("config: admin token and the non-loopback rule (issue 12)", () => {
  it("knows loopback hosts", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST"])
      expect(isLoopbackHost(h)).toBe(true);
    for (const h of ["0.0.0.0", "::", "10.0.0.5", "128.0.0.1", "127.0.0.1.example.com", "example.com"]) {
      expect(isLoopbackHost(h)).toBe(false);
    }
  });

  it("refuses a non-loopback admin address without a token, in one line naming the fix", () => {
    const err = expectConfigError(
      () => loadConfig(["--admin", "0.0.0.0:13801"], {}),
      "adminToken",
      "0.0.0.0:13801",
      "not a loopback address",
      "KITEQ_ADMIN_TOKEN",
    );
    expect(formatConfigError(err)).toMatch(/^kiteq-pg: KQ_CONFIG_INVALID: admin address 0\.0\.0\.0:13801/);
    // -pport as a bare port serves on the bind host: a wildcard bind needs the token too.
    expectConfigError(() => loadConfig(["-bind", ":13800", "-pport", "13801"], {}), "adminToken");
  });

  it("accepts a non-loopback admin address with a token from the environment, the file or a flag", () => {
    const env = loadConfig(["--admin", "0.0.0.0:13801"], { KITEQ_ADMIN_TOKEN: TOKEN }).config;
    expect(env.admin).toEqual({ host: "0.0.0.0", port: 13801 });
    expect(env.adminToken).toBe(TOKEN);
    const flag = loadConfig(["--admin", "0.0.0.0:13801", "--admin-token", TOKEN], {}).config;
    expect(flag.adminToken).toBe(TOKEN);
  });

  it("needs no token on loopback or with admin disabled, and still takes one there", () => {
    expect(loadConfig([], {}).config.adminToken).toBeNull();
    expect(loadConfig(["-bind", "0.0.0.0:13800"], {}).config.admin).toEqual({
      host: "127.0.0.1",
      port: 13801,
    });
    expect(loadConfig(["-bind", "0.0.0.0:13800", "-pport", "-1"], {}).config.admin).toBeNull();
    expect(loadConfig(["--admin", "[::1]:9000"], {}).config.admin).toEqual({ host: "::1", port: 9000 });
    // Given (flag or environment) or the default: the CLI reads any broker only at a given address.
    expect(loadConfig(["--admin", "[::1]:9000"], {}).config.adminGiven).toBe(true);
    expect(loadConfig([], { KITEQ_ADMIN: "127.0.0.1:9001" }).config.adminGiven).toBe(true);
    expect(loadConfig([], {}).config.adminGiven).toBe(false);
    expect(loadConfig([], { KITEQ_ADMIN_TOKEN: TOKEN }).config.adminToken).toBe(TOKEN);
  });

  it("refuses a short or spaced token without showing it", () => {
    const short = expectConfigError(
      () => loadConfig([], { KITEQ_ADMIN_TOKEN: "short-secret" }),
      "adminToken",
    );
    expect(short.message).not.toContain("short-secret");
    expect(short.message).toContain("at least 16");
    const spaced = expectConfigError(
      () => loadConfig(["--admin-token", "has a space in it!!"], {}),
      "adminToken",
    );
    expect(spaced.message).not.toContain("has a space");
  });
});

describe("config: --pg-port", () => {
  it("defaults to 0 (a free port) and is pinned by flag or KITEQ_PG_PORT", () => {
    expect(loadConfig([], {}).config.pgPort).toBe(0);
    expect(loadConfig(["--pg-port", "15432"], {}).config.pgPort).toBe(15432);
    expect(loadConfig(["-pgPort=15433"], {}).config.pgPort).toBe(15433);
    expect(loadConfig([], { KITEQ_PG_PORT: "15434" }).config.pgPort).toBe(15434);
  });

  it("refuses a port out of range", () => {
    expectConfigError(() => loadConfig(["--pg-port", "70000"], {}), "pgPort", "65535");
    expectConfigError(() => loadConfig(["--pg-port", "-1"], {}), "pgPort");
    expectConfigError(() => loadConfig([], { KITEQ_PG_PORT: "x" }), "pgPort", "KITEQ_PG_PORT");
  });
});
