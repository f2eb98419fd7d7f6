import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config/index.js";
import { tempDir } from "./helpers.js";

const dir = tempDir();
afterAll(() => dir.cleanup());

const file = dir.write(
  "cluster.toml",
  `
[registry.dev]
hosts = "zk://file-zk:2181"
[clusters.c]
env = "dev"
topics = ["from-file"]
deliverySeconds = 11
recoverSeconds = 12
maxDeliverWorkers = 13
db = "postgres://file-host/kiteq"
[secrets]
g = "from-file"
`,
);

describe("precedence: defaults < file < environment < flags", () => {
  it("takes each setting from the highest source that gives it", () => {
    const { config } = loadConfig(["-configPath", file, "--delivery-seconds", "31", "-bind=:14000"], {
      KITEQ_DELIVERY_SECONDS: "21",
      KITEQ_RECOVER_SECONDS: "22",
      KITEQ_TOPICS: "env-a, env-b",
      KITEQ_SECRETS: "h=from-env",
    });
    expect(config.deliverySeconds).toBe(31); // flag over env over file
    expect(config.recoverSeconds).toBe(22); // env over file
    expect(config.maxDeliverWorkers).toBe(13); // file over default
    expect(config.leaseSeconds).toBe(30); // default
    expect(config.topics).toEqual(["env-a", "env-b"]);
    expect(config.bind).toEqual({ host: "0.0.0.0", port: 14000 });
    // A source that sets the secrets replaces the lower one's whole list.
    expect([...config.secrets]).toEqual([["h", "from-env"]]);
    expect(config.databaseUrl).toBe("postgres://file-host/kiteq");
  });

  it("lets KITEQ_REGISTRY and --registry override [registry.env]", () => {
    const env = { KITEQ_REGISTRY: "zk://env-zk:2181" };
    expect(loadConfig(["-configPath", file], env).config.registry).toMatchObject({ hosts: ["env-zk:2181"] });
    expect(
      loadConfig(["-configPath", file, "--registry", "zk://flag-zk"], env).config.registry,
    ).toMatchObject({
      hosts: ["flag-zk:2181"],
    });
    expect(loadConfig(["-configPath", file, "--registry=static"], env).config.registry).toEqual({
      kind: "static",
      file: null,
    });
  });

  it("lets KITEQ_DB_URL and --db override the file's db", () => {
    const env = { KITEQ_DB_URL: "postgresql://env-host/kiteq" };
    expect(loadConfig(["-configPath", file], env).config.databaseUrl).toBe("postgresql://env-host/kiteq");
    expect(loadConfig(["-configPath", file, "-db", "postgres://flag-host/k"], env).config.databaseUrl).toBe(
      "postgres://flag-host/k",
    );
  });

  it("takes configPath and clusterName from the environment, flags first", () => {
    const other = dir.write(
      "other.toml",
      "[clusters.x]\ndeliverySeconds = 3\n[clusters.y]\ndeliverySeconds = 4\n",
    );
    expect(loadConfig([], { KITEQ_CONFIG_PATH: file }).config.deliverySeconds).toBe(11);
    const env = { KITEQ_CONFIG_PATH: file, KITEQ_CLUSTER_NAME: "y" };
    const { config } = loadConfig(["--config-path", other], env);
    expect(config.clusterName).toBe("y");
    expect(config.deliverySeconds).toBe(4);
    expect(loadConfig(["--config-path", other, "--clusterName=x"], env).config.deliverySeconds).toBe(3);
  });

  it("lets the last of repeated flags win, as Go's flag package does", () => {
    expect(loadConfig(["-bind", ":1", "--bind=:2"], {}).config.bind.port).toBe(2);
  });
});

describe("flag forms", () => {
  it.each([
    [["-bind=10.1.2.3:1500"]],
    [["-bind", "10.1.2.3:1500"]],
    [["--bind=10.1.2.3:1500"]],
    [["--bind", "10.1.2.3:1500"]],
  ])("reads %j", (argv) => {
    expect(loadConfig(argv, {}).config.bind).toEqual({ host: "10.1.2.3", port: 1500 });
  });

  it("accepts one or two dashes for every name of a setting", () => {
    const cases: [string, string, (c: ReturnType<typeof loadConfig>["config"]) => unknown, unknown][] = [
      ["db", "postgres://h/d", (c) => c.databaseUrl, "postgres://h/d"],
      ["data-dir", "/d", (c) => c.dataDir, "/d"],
      ["dataDir", "/e", (c) => c.dataDir, "/e"],
      ["registry-file", "r.yaml", (c) => c.registry, { kind: "static", file: "r.yaml" }],
      ["node-id", "n1", (c) => c.nodeId, "n1"],
      ["log-level", "warn", (c) => c.logLevel, "warn"],
      ["admin", "127.0.0.1:9999", (c) => c.admin, { host: "127.0.0.1", port: 9999 }],
      ["pport", "-1", (c) => c.admin, null],
      ["recievePermitsPerSecond", "0", (c) => c.receivePermitsPerSecond, 0],
      ["receive-permits-per-second", "7", (c) => c.receivePermitsPerSecond, 7],
      ["dlq-exec-hour", "0", (c) => c.dlqExecHour, 0],
      [
        "redelivery",
        "1:0,2:9",
        (c) => c.redelivery,
        [
          { fromAttempt: 1, delaySeconds: 0 },
          { fromAttempt: 2, delaySeconds: 9 },
        ],
      ],
    ];
    for (const [name, value, get, expected] of cases) {
      for (const dashes of ["-", "--"]) {
        expect(get(loadConfig([`${dashes}${name}`, value], {}).config), `${dashes}${name}`).toEqual(expected);
        expect(get(loadConfig([`${dashes}${name}=${value}`], {}).config), `${dashes}${name}=`).toEqual(
          expected,
        );
      }
    }
  });

  it("serves admin on bind's host when -pport is a bare port, as KiteQ's pprof port", () => {
    // A non-loopback admin address needs a token (issue 12).
    const env = { KITEQ_ADMIN_TOKEN: "0123456789abcdef" };
    expect(loadConfig(["-bind", "10.0.0.5:13800", "-pport", "13900"], env).config.admin).toEqual({
      host: "10.0.0.5",
      port: 13900,
    });
  });

  it("derives the node id from bind, using the host name for a wildcard host", () => {
    expect(loadConfig(["-bind", "10.0.0.5:1234"], {}).config.nodeId).toBe("10.0.0.5:1234");
    expect(loadConfig(["-bind", "[::1]:1234"], {}).config.nodeId).toBe("[::1]:1234");
    expect(loadConfig(["-bind", ":1234"], {}).config.nodeId).toMatch(/^[^:]+:1234$/);
    expect(loadConfig(["-bind", ":1234"], {}).config.nodeId).not.toBe("0.0.0.0:1234");
  });
});
