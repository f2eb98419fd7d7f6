import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config/index.js";
import { expectConfigError, tempDir } from "./helpers.js";

const dir = tempDir();
afterAll(() => dir.cleanup());

/** KiteQ's cluster.toml as KiteQ ships it, two clusters in two envs. */
const KITEQ_TOML = `
[registry]
  [registry.dev]
  hosts="zk://localhost:2181"
  [registry.online]
  hosts="zk://10.0.0.1:2181,10.0.0.2:2181"
[clusters]
  [clusters.rocksdb_dev]
  env="dev"                       # selects [registry.dev]
  topics=["trade","test"]
  dlqExecHour=3
  logxml="./log/log.xml"
  db="rocksdb://./db/"
  deliveryFirst=false
  deliverySeconds=7
  maxDeliverWorkers=16
  recoverSeconds=11
  recievePermitsPerSecond=9000
  [clusters.pg_online]
  env="online"
  topics=["relation","message"]
  db="postgresql://kiteq:pw@db.internal:5432/kiteq"
  deliverySeconds=4
`;

describe("cluster.toml", () => {
  const path = dir.write("cluster.toml", KITEQ_TOML);

  it("reads every KiteQ key of the selected cluster and its registry env", () => {
    const { config, warnings } = loadConfig(["-configPath", path, "-clusterName", "rocksdb_dev"], {});
    expect(config.clusterName).toBe("rocksdb_dev");
    expect(config.configPath).toBe(path);
    expect(config.registry).toEqual({
      kind: "zookeeper",
      hosts: ["localhost:2181"],
      sessionTimeoutMs: 30_000,
    });
    expect(config.topics).toEqual(["trade", "test"]);
    expect(config.dlqExecHour).toBe(3);
    expect(config.deliverySeconds).toBe(7);
    expect(config.maxDeliverWorkers).toBe(16);
    expect(config.recoverSeconds).toBe(11);
    expect(config.receivePermitsPerSecond).toBe(9000);
    // rocksdb:// is another store: ignored with a warning, the embedded PostgreSQL is used.
    expect(config.databaseUrl).toBeNull();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('db "rocksdb://./db/"');
  });

  it("selects the other cluster's env and uses a postgresql:// db URL", () => {
    const { config, warnings } = loadConfig(["--cluster-name=pg_online", "--config", path], {});
    expect(config.registry).toEqual({
      kind: "zookeeper",
      hosts: ["10.0.0.1:2181", "10.0.0.2:2181"],
      sessionTimeoutMs: 30_000,
    });
    expect(config.topics).toEqual(["relation", "message"]);
    expect(config.databaseUrl).toBe("postgresql://kiteq:pw@db.internal:5432/kiteq");
    expect(config.deliverySeconds).toBe(4);
    expect(config.recoverSeconds).toBe(10); // not in this cluster: the default
    expect(warnings).toEqual([]);
  });

  it("requires clusterName when the file has several clusters", () => {
    expectConfigError(() => loadConfig(["-configPath", path], {}), "clusterName", "rocksdb_dev, pg_online");
  });

  it("rejects an unknown clusterName, listing the known ones", () => {
    expectConfigError(
      () => loadConfig(["-configPath", path, "-clusterName", "nope"], {}),
      "clusterName",
      '"nope"',
      "rocksdb_dev, pg_online",
    );
  });

  it("uses the only cluster without clusterName; reads our keys, [secrets] and warns on unknown keys", () => {
    const p = dir.write(
      "single.toml",
      `
[zookeeper.dev]
hosts = "zk://zk1:2181?timeout=5s"
[clusters.only]
env = "dev"
topics = ["a"]
leaseSeconds = 45
batchMaxMessages = 500
batchWindowMs = 0
txCheckSeconds = 2
txCheckMaxSeconds = 30
txCheckBackoff = 1.5
txGiveUpSeconds = 3600
idleTimeoutSeconds = 90
dataDir = "/var/lib/kiteq"
logLevel = "debug"
redelivery = [{ fromAttempt = 1, delaySeconds = 1 }, { fromAttempt = 3, delaySeconds = 30 }]
colour = "blue"
[secrets]
"order-group" = "s3cr=t"
payments = "p"
[extra]
x = 1
`,
    );
    const { config, warnings } = loadConfig(["-configPath", p], {});
    expect(config.clusterName).toBe("only");
    expect(config.registry).toEqual({ kind: "zookeeper", hosts: ["zk1:2181"], sessionTimeoutMs: 5000 });
    expect(config.leaseSeconds).toBe(45);
    expect(config.batch).toEqual({ maxMessages: 500, windowMs: 0 });
    expect(config.txCheck).toEqual({
      firstCheckSeconds: 2,
      backoffFactor: 1.5,
      maxIntervalSeconds: 30,
      giveUpSeconds: 3600,
    });
    expect(config.idleTimeoutSeconds).toBe(90);
    expect(config.dataDir).toBe("/var/lib/kiteq");
    expect(config.logLevel).toBe("debug");
    expect(config.redelivery).toEqual([
      { fromAttempt: 1, delaySeconds: 1 },
      { fromAttempt: 3, delaySeconds: 30 },
    ]);
    expect([...config.secrets]).toEqual([
      ["order-group", "s3cr=t"],
      ["payments", "p"],
    ]);
    expect(warnings).toEqual([
      `unknown key extra in ${p} (ignored)`,
      `unknown key clusters.only.colour in ${p} (ignored)`,
    ]);
  });

  it("reads a cluster without env as the static registry, with a registry file", () => {
    const p = dir.write("static.toml", '[clusters.solo]\nregistryFile = "./registry.yaml"\n');
    const { config } = loadConfig(["-configPath", p], {});
    expect(config.registry).toEqual({ kind: "static", file: "./registry.yaml" });
    expect(config.topics).toEqual([]);
  });

  it("warns that deliveryFirst=true is ignored", () => {
    const p = dir.write("first.toml", "[clusters.c]\ndeliveryFirst = true\n");
    const { warnings } = loadConfig(["-configPath", p], {});
    expect(warnings).toEqual([
      `deliveryFirst=true in ${p} ignored: kiteq-pg always stores before delivering`,
    ]);
  });
});

describe("cluster.toml errors", () => {
  it("names the key, the file and the bad value", () => {
    const p = dir.write("bad.toml", '[clusters.c]\ndeliverySeconds = "abc"\n');
    const err = expectConfigError(() => loadConfig(["-configPath", p], {}), "deliverySeconds");
    expect(err.message).toBe(
      `invalid value for deliverySeconds in ${p}: "abc" (expected a positive integer)`,
    );
  });

  it.each([
    ["recoverSeconds = -1", "recoverSeconds", "-1"],
    ["maxDeliverWorkers = 0", "maxDeliverWorkers", "0"],
    ["dlqExecHour = 24", "dlqExecHour", "24"],
    ["recievePermitsPerSecond = 1.5", "receivePermitsPerSecond", "recievePermitsPerSecond"],
    ['topics = "trade"', "topics", '"trade"'],
    ['topics = ["a/b"]', "topics", "a/b"],
    ["deliveryFirst = 1", "deliveryFirst", "deliveryFirst"],
    ['db = "not a url"', "databaseUrl", "not a url"],
    ['logLevel = "loud"', "logLevel", "loud"],
    ["redelivery = [{ fromAttempt = 2, delaySeconds = 1 }]", "redelivery", "fromAttempt"],
    ['env = "staging"', "registry", '"staging"'],
  ])("rejects %s", (line, key, part) => {
    const p = dir.write(`bad-${key}.toml`, `[registry.dev]\nhosts = "zk://h:2181"\n[clusters.c]\n${line}\n`);
    expectConfigError(() => loadConfig(["-configPath", p], {}), key, part, p);
  });

  it("rejects an unsupported registry scheme in [registry.env]", () => {
    const p = dir.write("etcd.toml", '[registry.dev]\nhosts = "etcd://h:2379"\n[clusters.c]\nenv = "dev"\n');
    expectConfigError(() => loadConfig(["-configPath", p], {}), "registry", "registry.dev.hosts", "etcd://");
  });

  it("rejects a secret that is not a string without showing it", () => {
    const p = dir.write("secret.toml", "[secrets]\ng1 = 12345\n");
    const err = expectConfigError(() => loadConfig(["-configPath", p], {}), "secrets", "secrets.g1");
    expect(err.message).not.toContain("12345");
  });

  it("rejects a missing file", () => {
    expectConfigError(
      () => loadConfig(["-configPath", "/nonexistent/kiteq/cluster.toml"], {}),
      "configPath",
      "config file not found: /nonexistent/kiteq/cluster.toml",
    );
  });

  it("rejects unparsable TOML with its line", () => {
    const p = dir.write("broken.toml", '[clusters.c]\ntopics = ["a",\n[oops\n');
    expectConfigError(() => loadConfig(["-configPath", p], {}), "configPath", `invalid TOML in ${p} at line`);
  });
});
