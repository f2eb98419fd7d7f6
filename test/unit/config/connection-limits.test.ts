/** The connection limits: defaults, every source (flag, KITEQ_* variable, cluster.toml key), validation. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONNECTION_LIMITS, loadConfig } from "../../../src/config/index.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";

function refusal(argv: string[], env: NodeJS.ProcessEnv = {}): KiteqError {
  try {
    loadConfig(argv, env);
  } catch (err) {
    return err as KiteqError;
  }
  throw new Error("expected the configuration to be refused");
}

describe("connection limits", () => {
  it("default to a 10 s handshake, 10,000 connections, 500 per address, 16 MiB unsent per connection", () => {
    const { config } = loadConfig([], {});
    expect(config.connections).toEqual(DEFAULT_CONNECTION_LIMITS);
    expect(config.connections).toEqual({
      handshakeTimeoutSeconds: 10,
      maxConnections: 10_000,
      maxConnectionsPerAddress: 500,
      maxWriteBufferBytes: 16_777_216,
    });
    expect(Object.isFrozen(config.connections)).toBe(true);
  });

  it("are read from flags, KITEQ_* variables and cluster.toml, flags winning", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kiteq-limits-"));
    const file = path.join(dir, "cluster.toml");
    writeFileSync(
      file,
      `[clusters.local]\nhandshakeTimeoutSeconds = 3\nmaxConnections = 100\nmaxConnectionsPerAddress = 7\nmaxWriteBufferBytes = 1048576\n`,
    );
    const fromFile = loadConfig([`-configPath=${file}`, "-clusterName=local"], {}).config.connections;
    expect(fromFile).toEqual({
      handshakeTimeoutSeconds: 3,
      maxConnections: 100,
      maxConnectionsPerAddress: 7,
      maxWriteBufferBytes: 1_048_576,
    });
    const fromEnv = loadConfig([`-configPath=${file}`, "-clusterName=local"], {
      KITEQ_HANDSHAKE_TIMEOUT_SECONDS: "4",
      KITEQ_MAX_CONNECTIONS: "200",
      KITEQ_MAX_CONNECTIONS_PER_ADDRESS: "8",
      KITEQ_MAX_WRITE_BUFFER_BYTES: "2097152",
    }).config.connections;
    expect(fromEnv).toEqual({
      handshakeTimeoutSeconds: 4,
      maxConnections: 200,
      maxConnectionsPerAddress: 8,
      maxWriteBufferBytes: 2_097_152,
    });
    const fromFlags = loadConfig(
      [
        "--handshake-timeout-seconds=5",
        "-maxConnections",
        "0",
        "--max-connections-per-address",
        "0",
        "--max-write-buffer-bytes=65536",
      ],
      { KITEQ_MAX_CONNECTIONS: "200" },
    ).config.connections;
    expect(fromFlags).toEqual({
      handshakeTimeoutSeconds: 5,
      maxConnections: 0,
      maxConnectionsPerAddress: 0,
      maxWriteBufferBytes: 65_536,
    });
  });

  it("refuses values that would break the broker, naming the setting", () => {
    for (const [argv, key] of [
      [["--handshake-timeout-seconds=0"], "handshakeTimeoutSeconds"],
      [["--max-connections=-1"], "maxConnections"],
      [["--max-connections-per-address=many"], "maxConnectionsPerAddress"],
      [["--max-write-buffer-bytes=1024"], "maxWriteBufferBytes"],
    ] as const) {
      const err = refusal([...argv]);
      expect(err).toBeInstanceOf(KiteqError);
      expect(err.code).toBe(ErrorCode.ConfigInvalid);
      expect(err.context.key).toBe(key);
    }
    expect(refusal(["--max-write-buffer-bytes=1024"]).message).toMatch(/at least 65536/);
  });

  it("warns when one address may take every connection of the node", () => {
    const { warnings } = loadConfig(["--max-connections=10", "--max-connections-per-address=20"], {});
    expect(warnings).toEqual([
      expect.stringMatching(/maxConnectionsPerAddress \(20\) is above maxConnections \(10\)/),
    ]);
  });
});
