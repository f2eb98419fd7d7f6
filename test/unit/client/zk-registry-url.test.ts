/**
 * A registry URL's `?timeout=`: the SDK and the broker's --registry parse it with one parser, so
 * both take and refuse the same URLs (before, the SDK took `timeout=90m` though the README says at
 * most 60m, and refused `timeout=2h` or `timeout=4` as an "unknown parameter").
 */
import { describe, expect, it } from "vitest";
import { parseZkRegistry } from "../../../src/client/directory.js";
import { loadConfig } from "../../../src/config/index.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";

/** The SDK's session timeout for `query`, or its error message. */
function sdk(query: string): number | string | undefined {
  try {
    return parseZkRegistry(`zk://127.0.0.1:2181?${query}`).sessionTimeoutMs;
  } catch (err) {
    expect(err).toBeInstanceOf(KiteqError);
    expect((err as KiteqError).code).toBe(ErrorCode.ConfigInvalid);
    expect((err as KiteqError).context.key).toBe("registry");
    return (err as KiteqError).message;
  }
}

/** The broker's session timeout for `query`, or its error message. */
function broker(query: string): number | string {
  try {
    const { registry } = loadConfig(
      ["--registry", `zk://127.0.0.1:2181?${query}`, "--topics", "t"],
      {},
    ).config;
    return registry.kind === "zookeeper" ? registry.sessionTimeoutMs : "not zookeeper";
  } catch (err) {
    expect((err as KiteqError).code).toBe(ErrorCode.ConfigInvalid);
    return (err as KiteqError).message;
  }
}

describe("a registry URL's timeout", () => {
  it.each([
    ["timeout=4s", 4_000],
    ["timeout=500ms", 500],
    ["timeout=60m", 3_600_000],
    ["sessionTimeout=30s", 30_000],
  ])("%s: %i ms in both", (query, ms) => {
    expect(sdk(query)).toBe(ms);
    expect(broker(query)).toBe(ms);
  });

  it.each([
    ["timeout=2h", 'timeout "2h" is not <n>ms, <n>s or <n>m, from 1ms to 60m'],
    ["timeout=4", 'timeout "4" is not <n>ms, <n>s or <n>m, from 1ms to 60m'],
    ["timeout=90m", 'timeout "90m" is not <n>ms, <n>s or <n>m, from 1ms to 60m'],
    ["timeout=0s", 'timeout "0s" is not'],
    ["timeout=", 'timeout "" is not'],
    ["bogus=1", 'unknown parameter "bogus=1" (known: timeout=<n>ms, <n>s or <n>m, from 1ms to 60m)'],
  ])("%s: refused by both, saying why", (query, why) => {
    expect(sdk(query)).toContain(why);
    expect(broker(query)).toContain(why);
  });
});
