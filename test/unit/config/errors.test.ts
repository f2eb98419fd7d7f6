import { describe, expect, it } from "vitest";
import { CONFIG_ERROR_EXIT_CODE, formatConfigError, loadConfig } from "../../../src/config/index.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";
import { expectConfigError } from "./helpers.js";

describe("bad flags", () => {
  it.each([
    [
      ["--delivery-seconds", "abc"],
      "deliverySeconds",
      '--delivery-seconds: "abc" (expected a positive integer)',
    ],
    [["-recoverSeconds=-5"], "recoverSeconds", '"-5"'],
    [["--lease-seconds", "0"], "leaseSeconds", '"0"'],
    [["--lease-seconds", "9999999"], "leaseSeconds", "up to 2147483"],
    [["--batch-window-ms", "1.5"], "batchWindowMs", '"1.5"'],
    [["--dlq-exec-hour", "-1"], "dlqExecHour", "from 0 to 23"],
    [["--tx-check-backoff", "0.5"], "txCheckBackoff", "a number >= 1"],
    [["-bind", "localhost"], "bind", '-bind: "localhost"'],
    [["-bind", "h:70000"], "bind", '"h:70000"'],
    [["-bind", "::1:80"], "bind", '"::1:80"'],
    [["-bind", "bad host:80"], "bind", '"bad host:80"'],
    [["--admin", "x:y"], "admin", '"x:y"'],
    [["--db", "mysql://root:hunter2@h/db"], "databaseUrl", '"mysql://root:***@h/db"'],
    [["--db", "rocksdb://./db/"], "databaseUrl", "postgres:// or postgresql://"],
    [["--registry", "etcd://h:2379"], "registry", '"etcd://h:2379"'],
    [["--registry", "zk://h:2181/chroot"], "registry", "zk://host:port"],
    [["--registry", "zk://h:2181?timeout=soon"], "registry", "timeout"],
    [["--log-level", "verbose"], "logLevel", "one of fatal, error, warn, info, debug, trace, silent"],
    [["--topics", "a,b c"], "topics", '"a,b c"'],
    [["--node-id", "a/b"], "nodeId", '"a/b"'],
    [["--redelivery", "1:0,1:5"], "redelivery", '"1:0,1:5"'],
    [["--redelivery", "2:0"], "redelivery", "starting at attempt 1"],
    [["--redelivery", "1:-3"], "redelivery", '"1:-3"'],
    // Each of these made an invalid date in a statement at run time (or crashed the ZooKeeper
    // client): a nacked message held for ever, check-backs never sent, retention never run.
    [["--redelivery", "1:9999999999999"], "redelivery", "delays from 0 to 31536000 (a year)"],
    [["--tx-give-up-seconds", "9007199254740991"], "txGiveUpSeconds", "up to 31536000"],
    [["--retention-days", "100000000"], "retentionDays", "up to 36500"],
    [
      ["--registry", "zk://h:2181?timeout=40000m"],
      "registry",
      'timeout "40000m" is not <n>ms, <n>s or <n>m, from 1ms to 60m',
    ],
  ])("%j", (argv, key, part) => {
    expectConfigError(() => loadConfig(argv, {}), key, part);
  });

  it("rejects an unknown flag, with either dash form", () => {
    expectConfigError(() => loadConfig(["-nope=1"], {}), "-nope", "unknown flag -nope");
    expectConfigError(
      () => loadConfig(["--cluster_name", "x"], {}),
      "--cluster_name",
      "unknown flag --cluster_name",
    );
    expectConfigError(() => loadConfig(["---bind", ":1"], {}), "---bind", "unknown flag ---bind");
  });

  it("rejects a flag without its value and a positional argument", () => {
    expectConfigError(() => loadConfig(["--db"], {}), "databaseUrl", "flag --db needs a value");
    expectConfigError(() => loadConfig(["serve"], {}), "argv", '"serve"');
  });

  it("never shows a password of a database URL", () => {
    const err = expectConfigError(() => loadConfig(["--db", "mysql://u:hunter2@h/d"], {}), "databaseUrl");
    expect(err.message).not.toContain("hunter2");
  });
});

describe("bad environment variables", () => {
  it.each([
    [{ KITEQ_DELIVERY_SECONDS: "abc" }, "deliverySeconds", 'KITEQ_DELIVERY_SECONDS: "abc"'],
    [{ KITEQ_BIND: "nope" }, "bind", 'KITEQ_BIND: "nope"'],
    [{ KITEQ_DB_URL: "http://x" }, "databaseUrl", 'KITEQ_DB_URL: "http://x"'],
    [{ KITEQ_REGISTRY: "consul://x" }, "registry", "KITEQ_REGISTRY"],
    [{ KITEQ_SECRETS: "g1" }, "secrets", "KITEQ_SECRETS"],
    [{ KITEQ_SECRETS: "g1=a,g1=b" }, "secrets", "each group once"],
    [{ KITEQ_MAX_DELIVER_WORKERS: "-2" }, "maxDeliverWorkers", '"-2"'],
    [
      { KITEQ_RECIEVE_PERMITS_PER_SECOND: "1", KITEQ_RECEIVE_PERMITS_PER_SECOND: "2" },
      "receivePermitsPerSecond",
      "set only one",
    ],
  ])("%j", (env, key, part) => {
    expectConfigError(() => loadConfig([], env), key, part);
  });

  it("never shows a secret of KITEQ_SECRETS", () => {
    const err = expectConfigError(
      () => loadConfig([], { KITEQ_SECRETS: "good=topsecret,bad group=x1y2" }),
      "secrets",
    );
    expect(err.message).not.toContain("topsecret");
    expect(err.message).not.toContain("x1y2");
    expect(err.message).toContain('"bad group=***"');
  });
});

describe("checks across settings", () => {
  it("requires topics with a ZooKeeper registry", () => {
    expectConfigError(() => loadConfig(["--registry", "zk://h:2181"], {}), "topics", "--registry");
    expect(loadConfig(["--registry", "zk://h:2181", "--topics", "trade"], {}).config.registry.kind).toBe(
      "zookeeper",
    );
  });

  it("rejects tx check intervals that cannot work", () => {
    expectConfigError(
      () => loadConfig(["--tx-check-seconds", "10", "--tx-check-max-seconds", "5"], {}),
      "txCheckMaxSeconds",
    );
    expectConfigError(
      () => loadConfig(["--tx-check-seconds", "10", "--tx-give-up-seconds", "5"], {}),
      "txGiveUpSeconds",
    );
  });

  it("rejects an admin address equal to the bind address", () => {
    expectConfigError(() => loadConfig(["-bind", "127.0.0.1:5000", "-pport", "5000"], {}), "admin");
  });

  it("warns when a lease is not longer than the delivery timeout", () => {
    const { warnings } = loadConfig(["--lease-seconds", "5"], {});
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("leaseSeconds (5)");
  });

  it("warns about a registry file in ZooKeeper mode and about clusterName without a file", () => {
    const { warnings } = loadConfig(
      ["--registry", "zk://h", "--topics", "t", "--registry-file", "r.yaml", "--cluster-name", "c"],
      {},
    );
    expect(warnings).toEqual([
      'clusterName "c" ignored: no config file (-configPath) given',
      "registryFile (flag --registry-file) ignored with a ZooKeeper registry",
    ]);
  });
});

describe("formatConfigError", () => {
  it("gives the CLI one line with the code, and exit code 2", () => {
    const err = new KiteqError(ErrorCode.ConfigInvalid, "invalid value for x:\n  bad", { key: "x" });
    expect(formatConfigError(err)).toBe("kiteq-pg: KQ_CONFIG_INVALID: invalid value for x: bad");
    expect(formatConfigError(new Error("boom"))).toBe("kiteq-pg: boom");
    expect(CONFIG_ERROR_EXIT_CODE).toBe(2);
  });
});
