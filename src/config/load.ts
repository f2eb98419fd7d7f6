/**
 * loadConfig: defaults < cluster.toml (-configPath) < KITEQ_* environment < flags, then the
 * checks that span several settings, into one frozen BrokerConfig.
 */
import { hostname } from "node:os";
import { KiteqError } from "../errors.js";
import { readEnv } from "./env.js";
import { readFlags } from "./flags.js";
import { defaultSettings, type Layer, type Settings } from "./settings.js";
import { readClusterFile } from "./toml.js";
import type { BindAddress, BrokerConfig, LoadedConfig, RegistryConfig } from "./types.js";
import { configError } from "./values.js";

/** Exit code of the CLI when the configuration is invalid (as for a usage error). */
export const CONFIG_ERROR_EXIT_CODE = 2;

/**
 * Builds the broker's configuration. `argv` holds config flags only (split a command line
 * with parseFlags first); `env` is usually process.env. Throws KiteqError(ConfigInvalid) with
 * one line naming the flag, variable or file key and the bad value, and `context.key`.
 */
export function loadConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  /** serving: a broker node (it registers its topics in ZooKeeper); client commands need none. */
  options: { serving: boolean } = { serving: true },
): LoadedConfig {
  const flags = readFlags(argv);
  const fromEnv = readEnv(env);
  const warnings = [...fromEnv.warnings];
  const configPath = flags.values.configPath ?? fromEnv.layer.values.configPath;
  const clusterName = flags.values.clusterName ?? fromEnv.layer.values.clusterName;

  const layers: Layer[] = [];
  let selectedCluster: string | null = null;
  if (configPath !== undefined) {
    const file = readClusterFile(configPath, clusterName);
    layers.push(file.layer);
    warnings.push(...file.warnings);
    selectedCluster = file.clusterName;
  } else if (clusterName !== undefined) {
    warnings.push(`clusterName ${JSON.stringify(clusterName)} ignored: no config file (-configPath) given`);
  }
  layers.push(fromEnv.layer, flags);

  const values: Partial<Settings> & ReturnType<typeof defaultSettings> = defaultSettings();
  const origin: Layer["origin"] = {};
  for (const layer of layers) {
    Object.assign(values, layer.values);
    Object.assign(origin, layer.origin);
  }
  const config = build(values, origin, warnings, options.serving);
  return {
    config: Object.freeze({ ...config, clusterName: selectedCluster, configPath: configPath ?? null }),
    warnings,
  };
}

function build(
  v: Partial<Settings> & ReturnType<typeof defaultSettings>,
  origin: Layer["origin"],
  warnings: string[],
  serving: boolean,
): Omit<BrokerConfig, "clusterName" | "configPath"> {
  const from = (key: keyof Settings) => (origin[key] === undefined ? "default" : origin[key]);
  const bind = Object.freeze({ ...v.bind });
  const admin =
    v.admin === null ? null : Object.freeze({ host: v.admin.host ?? bind.host, port: v.admin.port });
  if (admin !== null && admin.port !== 0 && admin.port === bind.port && admin.host === bind.host) {
    throw configError(
      `admin address ${formatAddress(admin)} (${from("admin")}) is the bind address (${from("bind")}); use another port`,
      "admin",
    );
  }

  if (admin !== null && v.adminToken === undefined && !isLoopbackHost(admin.host)) {
    throw configError(
      `admin address ${formatAddress(admin)} (${from("admin")}) is not a loopback address and no admin token is set: ` +
        "set KITEQ_ADMIN_TOKEN (or --admin-token) or serve admin on 127.0.0.1",
      "adminToken",
    );
  }

  let registry: RegistryConfig;
  if (v.registry.kind === "static") {
    if (v.registry.file !== null && v.registryFile !== undefined && v.registryFile !== v.registry.file) {
      warnings.push(
        `registryFile (${from("registryFile")}) ignored: the registry names file://${v.registry.file}`,
      );
    }
    registry = Object.freeze({ kind: "static", file: v.registry.file ?? v.registryFile ?? null });
  } else {
    if (v.registryFile !== undefined) {
      warnings.push(`registryFile (${from("registryFile")}) ignored with a ZooKeeper registry`);
    }
    registry = Object.freeze({ ...v.registry, hosts: Object.freeze([...v.registry.hosts]) });
    if (v.topics.length === 0 && serving) {
      throw configError(
        `topics are required with a ZooKeeper registry (registry from ${from("registry")}): ` +
          "set topics in the [clusters.<name>] table, KITEQ_TOPICS or --topics",
        "topics",
      );
    }
  }

  if (v.txCheckMaxSeconds < v.txCheckSeconds) {
    throw configError(
      `txCheckMaxSeconds (${v.txCheckMaxSeconds}, ${from("txCheckMaxSeconds")}) is below txCheckSeconds (${v.txCheckSeconds}, ${from("txCheckSeconds")})`,
      "txCheckMaxSeconds",
    );
  }
  if (v.txGiveUpSeconds < v.txCheckSeconds) {
    throw configError(
      `txGiveUpSeconds (${v.txGiveUpSeconds}, ${from("txGiveUpSeconds")}) is below txCheckSeconds (${v.txCheckSeconds}, ${from("txCheckSeconds")}): no check would ever be made`,
      "txGiveUpSeconds",
    );
  }
  if (v.retentionDays > 0 && v.retentionDays < 8) {
    throw configError(
      `retentionDays (${v.retentionDays}, ${from("retentionDays")}) must be 0 (keep everything) or at least 8: a message may be owed for 7 days`,
      "retentionDays",
    );
  }
  if (v.maxConnections > 0 && v.maxConnectionsPerAddress > v.maxConnections) {
    warnings.push(
      `maxConnectionsPerAddress (${v.maxConnectionsPerAddress}) is above maxConnections (${v.maxConnections}): ` +
        "one address can take every connection of the node",
    );
  }
  if (v.leaseSeconds <= v.deliverySeconds) {
    warnings.push(
      `leaseSeconds (${v.leaseSeconds}) is not above deliverySeconds (${v.deliverySeconds}): ` +
        "a delivery's lease may end while its push still waits for the ack",
    );
  }

  return {
    bind,
    admin,
    adminGiven: origin.admin !== undefined,
    adminToken: v.adminToken ?? null,
    nodeId: v.nodeId ?? defaultNodeId(bind),
    databaseUrl: v.databaseUrl?.[0] ?? null,
    databaseUrls: Object.freeze([...(v.databaseUrl ?? [])]),
    dataDir: v.dataDir,
    pgPort: v.pgPort,
    registry,
    logLevel: v.logLevel,
    topics: Object.freeze([...v.topics]),
    secrets: new Map(v.secrets),
    batch: Object.freeze({ maxMessages: v.batchMaxMessages, windowMs: v.batchWindowMs }),
    leaseSeconds: v.leaseSeconds,
    idleTimeoutSeconds: v.idleTimeoutSeconds,
    connections: Object.freeze({
      handshakeTimeoutSeconds: v.handshakeTimeoutSeconds,
      maxConnections: v.maxConnections,
      maxConnectionsPerAddress: v.maxConnectionsPerAddress,
      maxWriteBufferBytes: v.maxWriteBufferBytes,
    }),
    redelivery: Object.freeze(v.redelivery.map((s) => Object.freeze({ ...s }))),
    txCheck: Object.freeze({
      firstCheckSeconds: v.txCheckSeconds,
      backoffFactor: v.txCheckBackoff,
      maxIntervalSeconds: v.txCheckMaxSeconds,
      giveUpSeconds: v.txGiveUpSeconds,
    }),
    deliverySeconds: v.deliverySeconds,
    recoverSeconds: v.recoverSeconds,
    receivePermitsPerSecond: v.receivePermitsPerSecond,
    maxWatermark: v.maxWatermark,
    maxDeliverWorkers: v.maxDeliverWorkers,
    dlqExecHour: v.dlqExecHour,
    retentionDays: v.retentionDays,
    shutdownGraceSeconds: v.shutdownGraceSeconds,
    publishLimits: Object.freeze({
      maxNameBytes: v.maxNameBytes,
      maxProperties: v.maxProperties,
      maxPropertiesBytes: v.maxPropertiesBytes,
    }),
  };
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatAddress(addr: BindAddress): string {
  return addr.host.includes(":") ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

/** True for a host that only this machine reaches: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === "localhost" || h === "::1" || h === "::ffff:127.0.0.1" || /^127(\.\d{1,3}){3}$/.test(h);
}

/** host:port of the bind address; a wildcard host (0.0.0.0, ::) is replaced by the machine's name. */
function defaultNodeId(bind: BindAddress): string {
  const wildcard = bind.host === "0.0.0.0" || bind.host === "::";
  return formatAddress(wildcard ? { host: hostname(), port: bind.port } : bind);
}

/**
 * The single line the CLI prints to stderr before exiting with CONFIG_ERROR_EXIT_CODE, e.g.
 * `kiteq-pg: KQ_CONFIG_INVALID: invalid value for -bind in the command line: "x" (expected ...)`.
 */
export function formatConfigError(err: unknown): string {
  const text = err instanceof KiteqError ? err.describe() : err instanceof Error ? err.message : String(err);
  return `kiteq-pg: ${text.replace(/\s*\n\s*/g, " ")}`;
}
