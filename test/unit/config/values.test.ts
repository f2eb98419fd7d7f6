import { describe, expect, it } from "vitest";
import {
  DEFAULT_REDELIVERY,
  loadConfig,
  parseBind,
  redactUrl,
  txCheckDelaySeconds,
} from "../../../src/config/index.js";
import { redeliveryDelayMs } from "../../../src/delivery/schedule.js";
import { expectConfigError } from "./helpers.js";

describe("parseBind", () => {
  it.each([
    ["127.0.0.1:13800", { host: "127.0.0.1", port: 13800 }],
    [":13800", { host: "0.0.0.0", port: 13800 }],
    ["localhost:0", { host: "localhost", port: 0 }],
    ["broker-1.example.com:65535", { host: "broker-1.example.com", port: 65535 }],
    ["[::1]:80", { host: "::1", port: 80 }],
    ["[::]:80", { host: "::", port: 80 }],
  ])("parses %s", (s, expected) => {
    expect(parseBind(s)).toEqual(expected);
  });

  it.each([
    "",
    "13800",
    "host",
    "host:",
    "host:-1",
    "host:65536",
    "host:80x",
    "::1:80",
    "[::1]",
    "[zz]:80",
    "-host:80",
    "a b:80",
  ])("rejects %j", (s) => {
    expectConfigError(() => parseBind(s), "bind", JSON.stringify(s));
  });
});

describe("KITEQ_SECRETS", () => {
  it("parses group=secret pairs; a secret may contain '='", () => {
    const { config } = loadConfig([], { KITEQ_SECRETS: "g1=s1, g2 = s2 ,g3=YWJj==" });
    expect([...config.secrets]).toEqual([
      ["g1", "s1"],
      ["g2", "s2"],
      ["g3", "YWJj=="],
    ]);
    expect(config.secrets.get("g1")).toBe("s1");
  });

  it.each(["g1=", "=s", "g1=s1,,g2=s2", "g 1=s"])("rejects %j", (value) => {
    expectConfigError(() => loadConfig([], { KITEQ_SECRETS: value }), "secrets", "KITEQ_SECRETS");
  });
});

describe("registry URIs", () => {
  it.each([
    ["static", { kind: "static", file: null }],
    ["file://./registry.yaml", { kind: "static", file: "./registry.yaml" }],
    [
      "zk://a:1,b,[::1]:3",
      { kind: "zookeeper", hosts: ["a:1", "b:2181", "[::1]:3"], sessionTimeoutMs: 30_000 },
    ],
    ["zk://a?timeout=50s", { kind: "zookeeper", hosts: ["a:2181"], sessionTimeoutMs: 50_000 }],
    ["zk://a?timeout=1m", { kind: "zookeeper", hosts: ["a:2181"], sessionTimeoutMs: 60_000 }],
  ])("reads %s", (uri, expected) => {
    expect(loadConfig(["--registry", uri, "--topics", "t"], {}).config.registry).toEqual(expected);
  });

  it.each(["zk://", "zk://a,,b", "zk://a:0", "zk://:2181", "file://", "zk://a?timeout=0s", "ZK://a"])(
    "rejects %j",
    (uri) => {
      expectConfigError(
        () => loadConfig(["--registry", uri, "--topics", "t"], {}),
        "registry",
        JSON.stringify(uri),
      );
    },
  );
});

describe("redactUrl", () => {
  it("hides the password only", () => {
    expect(redactUrl("postgres://u:p%40ss@h:5432/db")).toBe("postgres://u:***@h:5432/db");
    expect(redactUrl("postgres://u@h/db")).toBe("postgres://u@h/db");
  });
});

describe("schedules", () => {
  it("follows KiteQ's redelivery delays by attempt", () => {
    const delays = [1, 2, 3, 4, 9, 10, 19, 20, 30, 40, 49, 50, 100].map(
      (a) => redeliveryDelayMs(a, DEFAULT_REDELIVERY) / 1000,
    );
    expect(delays).toEqual([0, 0, 0, 5, 5, 10, 10, 20, 40, 80, 80, 160, 160]);
  });

  it("backs tx checks off by the factor up to the maximum", () => {
    const { txCheck } = loadConfig([], {}).config;
    expect([1, 2, 3, 4, 5, 6, 20].map((n) => txCheckDelaySeconds(txCheck, n))).toEqual([
      5, 10, 20, 40, 60, 60, 60,
    ]);
  });
});
