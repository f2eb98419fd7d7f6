import { describe, expect, it } from "vitest";
import { DEFAULT_REDELIVERY, loadConfig } from "../../../src/config/index.js";

describe("loadConfig defaults", () => {
  it("gives the documented defaults with no flags, no environment and no file", () => {
    const { config, warnings } = loadConfig([], {});
    expect(warnings).toEqual([]);
    expect({ ...config, secrets: [...config.secrets] }).toEqual({
      bind: { host: "127.0.0.1", port: 13800 },
      admin: { host: "127.0.0.1", port: 13801 },
      adminGiven: false,
      adminToken: null,
      nodeId: "127.0.0.1:13800",
      clusterName: null,
      configPath: null,
      databaseUrl: null,
      databaseUrls: [],
      dataDir: "./data",
      pgPort: 0,
      registry: { kind: "static", file: null },
      logLevel: "info",
      topics: [],
      secrets: [],
      batch: { maxMessages: 1000, windowMs: 0 },
      leaseSeconds: 30,
      idleTimeoutSeconds: 60,
      connections: {
        handshakeTimeoutSeconds: 10,
        maxConnections: 10_000,
        maxConnectionsPerAddress: 500,
        maxWriteBufferBytes: 16 * 1024 * 1024,
      },
      redelivery: [
        { fromAttempt: 1, delaySeconds: 0 },
        { fromAttempt: 4, delaySeconds: 5 },
        { fromAttempt: 10, delaySeconds: 10 },
        { fromAttempt: 20, delaySeconds: 20 },
        { fromAttempt: 30, delaySeconds: 40 },
        { fromAttempt: 40, delaySeconds: 80 },
        { fromAttempt: 50, delaySeconds: 160 },
      ],
      txCheck: { firstCheckSeconds: 5, backoffFactor: 2, maxIntervalSeconds: 60, giveUpSeconds: 86_400 },
      deliverySeconds: 5,
      recoverSeconds: 10,
      receivePermitsPerSecond: 8000,
      maxWatermark: 6000,
      maxDeliverWorkers: 8,
      dlqExecHour: 2,
      retentionDays: 30,
      shutdownGraceSeconds: 10,
      publishLimits: { maxNameBytes: 255, maxProperties: 64, maxPropertiesBytes: 65_536 },
    });
    expect(config.redelivery).toEqual(DEFAULT_REDELIVERY);
  });

  it("returns a frozen config whose lists cannot be changed by its users", () => {
    const { config } = loadConfig([], {});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.topics)).toBe(true);
    expect(Object.isFrozen(config.redelivery)).toBe(true);
    expect(Object.isFrozen(config.redelivery[0])).toBe(true);
    expect(Object.isFrozen(config.bind)).toBe(true);
    // A second load is not affected by anything done to the first one's values.
    expect(loadConfig([], {}).config.redelivery).not.toBe(config.redelivery);
  });

  it("ignores empty KITEQ_* variables and warns about unknown ones", () => {
    const { config, warnings } = loadConfig([], {
      KITEQ_DB_URL: "",
      KITEQ_DELIVERY_SECOND: "5",
      PATH: "/bin",
    });
    expect(config.databaseUrl).toBeNull();
    expect(warnings).toEqual(["unknown environment variable KITEQ_DELIVERY_SECOND (ignored)"]);
  });

  it("topics are required with ZooKeeper for a broker node, not for client commands (send, consume)", () => {
    expect(() => loadConfig(["--registry", "zk://127.0.0.1:2181"], {})).toThrow(
      /topics are required with a ZooKeeper registry/,
    );
    // Before: `send --topic trade --registry zk://...` was refused until given the server's --topics.
    expect(loadConfig(["--registry", "zk://127.0.0.1:2181"], {}, { serving: false }).config.topics).toEqual(
      [],
    );
  });

  it("knows KITEQ_LOG_FORMAT (read by the logger): no warning for json or pretty, one for another value", () => {
    expect(loadConfig([], { KITEQ_LOG_FORMAT: "json" }).warnings).toEqual([]);
    expect(loadConfig([], { KITEQ_LOG_FORMAT: "pretty" }).warnings).toEqual([]);
    expect(loadConfig([], { KITEQ_LOG_FORMAT: "xml" }).warnings).toEqual([
      "KITEQ_LOG_FORMAT=xml is not one of json, pretty (ignored)",
    ]);
  });
});
