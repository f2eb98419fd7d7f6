/**
 * The one list of settings: for each, its parser, its defaults, and its names in each source
 * (flags, KITEQ_* environment variables, keys of a `[clusters.X]` table in cluster.toml).
 * Flags, env.ts and toml.ts read this table; nothing else lists setting names.
 */
import { KITEQ_MAX_WATERMARK } from "../binding/binding.js";
import { DEFAULT_REDELIVERY_SCHEDULE } from "../delivery/schedule.js";
import { DEFAULT_PUBLISH_LIMITS } from "../publish/limits.js";
import type { BindAddress, LogLevel, RedeliveryStep } from "./types.js";
import {
  type AdminSpec,
  adminAddress,
  adminToken,
  bindAddress,
  delaySeconds,
  factor,
  hourOfDay,
  logLevel,
  nameBytesLimit,
  nodeId,
  nonEmptyString,
  nonNegativeInt,
  type Parser,
  port,
  positiveInt,
  postgresUrlList,
  propertiesBytesLimit,
  propertiesLimit,
  type RegistrySpec,
  redeliverySchedule,
  registry,
  retentionDaysValue,
  secretList,
  timerSeconds,
  topicList,
  writeBufferBytes,
} from "./values.js";

/** Every setting, flat, as the sources give it; load.ts turns it into a BrokerConfig. */
export interface Settings {
  bind: BindAddress;
  admin: AdminSpec;
  adminToken: string;
  clusterName: string;
  configPath: string;
  /** The PostgreSQL URLs: one, or several shards in order (empty: the embedded PostgreSQL). */
  databaseUrl: string[];
  dataDir: string;
  pgPort: number;
  registry: RegistrySpec;
  registryFile: string;
  nodeId: string;
  logLevel: LogLevel;
  topics: string[];
  secrets: Map<string, string>;
  batchMaxMessages: number;
  batchWindowMs: number;
  leaseSeconds: number;
  idleTimeoutSeconds: number;
  handshakeTimeoutSeconds: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  maxWriteBufferBytes: number;
  redelivery: RedeliveryStep[];
  txCheckSeconds: number;
  txCheckMaxSeconds: number;
  txCheckBackoff: number;
  txGiveUpSeconds: number;
  deliverySeconds: number;
  recoverSeconds: number;
  receivePermitsPerSecond: number;
  maxWatermark: number;
  maxDeliverWorkers: number;
  dlqExecHour: number;
  retentionDays: number;
  shutdownGraceSeconds: number;
  maxNameBytes: number;
  maxProperties: number;
  maxPropertiesBytes: number;
}

export type SettingKey = keyof Settings;

/** Some settings from one source, and where each came from (for messages). */
export interface Layer {
  values: { [K in SettingKey]?: Settings[K] };
  origin: { [K in SettingKey]?: string };
}

interface SettingSpec<T> {
  readonly parse: Parser<T>;
  /** Flag names without dashes; each works with one dash or two. */
  readonly flags: readonly string[];
  /** Environment variable names. */
  readonly env: readonly string[];
  /** Keys in the selected `[clusters.X]` table ([] = not read from there by name). */
  readonly toml: readonly string[];
}

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Derives the names: flags `--kebab-case` and `-camelCase`, env `KITEQ_SNAKE_CASE`, toml `camelCase`. */
function setting<T>(
  key: SettingKey,
  parse: Parser<T>,
  names: { flags?: string[]; env?: string[]; toml?: string[] } = {},
): SettingSpec<T> {
  return {
    parse,
    flags: names.flags ?? [...new Set([kebab(key), key])],
    env: names.env ?? [`KITEQ_${kebab(key).replaceAll("-", "_").toUpperCase()}`],
    toml: names.toml ?? [key],
  };
}

export const SETTINGS: { readonly [K in SettingKey]: SettingSpec<Settings[K]> } = {
  bind: setting("bind", bindAddress, { toml: [] }),
  admin: setting("admin", adminAddress, { flags: ["pport", "admin"], toml: [] }),
  // A flag as asked, though `ps` shows argv: KITEQ_ADMIN_TOKEN (or the file) keeps it out of sight.
  adminToken: setting("adminToken", adminToken),
  clusterName: setting("clusterName", nonEmptyString, { toml: [] }),
  configPath: setting("configPath", nonEmptyString, {
    flags: ["configPath", "config-path", "config"],
    toml: [],
  }),
  // In the file, `db` may hold another store's URL (ignored with a warning): toml.ts reads it.
  databaseUrl: setting("databaseUrl", postgresUrlList, { flags: ["db"], env: ["KITEQ_DB_URL"], toml: [] }),
  dataDir: setting("dataDir", nonEmptyString),
  pgPort: setting("pgPort", port),
  // In the file, the registry comes from [registry.{env}].hosts: toml.ts reads it.
  registry: setting("registry", registry, { toml: [] }),
  registryFile: setting("registryFile", nonEmptyString),
  nodeId: setting("nodeId", nodeId, { toml: [] }),
  logLevel: setting("logLevel", logLevel),
  topics: setting("topics", topicList),
  // In the file, secrets are the top-level [secrets] table: toml.ts reads it. No flag (ps shows argv).
  secrets: setting("secrets", secretList, { flags: [], toml: [] }),
  batchMaxMessages: setting("batchMaxMessages", positiveInt),
  batchWindowMs: setting("batchWindowMs", nonNegativeInt),
  leaseSeconds: setting("leaseSeconds", timerSeconds),
  idleTimeoutSeconds: setting("idleTimeoutSeconds", timerSeconds),
  handshakeTimeoutSeconds: setting("handshakeTimeoutSeconds", timerSeconds),
  maxConnections: setting("maxConnections", nonNegativeInt),
  maxConnectionsPerAddress: setting("maxConnectionsPerAddress", nonNegativeInt),
  maxWriteBufferBytes: setting("maxWriteBufferBytes", writeBufferBytes),
  redelivery: setting("redelivery", redeliverySchedule),
  txCheckSeconds: setting("txCheckSeconds", timerSeconds),
  txCheckMaxSeconds: setting("txCheckMaxSeconds", timerSeconds),
  txCheckBackoff: setting("txCheckBackoff", factor),
  txGiveUpSeconds: setting("txGiveUpSeconds", delaySeconds),
  deliverySeconds: setting("deliverySeconds", timerSeconds),
  recoverSeconds: setting("recoverSeconds", timerSeconds),
  // KiteQ spells it "reciev"; both spellings are understood everywhere.
  receivePermitsPerSecond: setting("receivePermitsPerSecond", nonNegativeInt, {
    flags: [
      "recievePermitsPerSecond",
      "recieve-permits-per-second",
      "receivePermitsPerSecond",
      "receive-permits-per-second",
    ],
    env: ["KITEQ_RECIEVE_PERMITS_PER_SECOND", "KITEQ_RECEIVE_PERMITS_PER_SECOND"],
    toml: ["recievePermitsPerSecond", "receivePermitsPerSecond"],
  }),
  maxWatermark: setting("maxWatermark", nonNegativeInt),
  maxDeliverWorkers: setting("maxDeliverWorkers", positiveInt),
  dlqExecHour: setting("dlqExecHour", hourOfDay),
  retentionDays: setting("retentionDays", retentionDaysValue),
  shutdownGraceSeconds: setting("shutdownGraceSeconds", timerSeconds),
  maxNameBytes: setting("maxNameBytes", nameBytesLimit),
  maxProperties: setting("maxProperties", propertiesLimit),
  maxPropertiesBytes: setting("maxPropertiesBytes", propertiesBytesLimit),
};

export const SETTING_KEYS = Object.keys(SETTINGS) as SettingKey[];

/** What a client may send (README, "Limits on what a client may send"). */
const DEFAULT_PUBLISH_LIMITS_SETTINGS = {
  maxNameBytes: DEFAULT_PUBLISH_LIMITS.maxNameBytes,
  maxProperties: DEFAULT_PUBLISH_LIMITS.maxProperties,
  maxPropertiesBytes: DEFAULT_PUBLISH_LIMITS.maxPropertiesBytes,
};

/** KiteQ's redelivery delays (defined with the schedule logic in src/delivery/schedule.ts). */
export const DEFAULT_REDELIVERY: readonly RedeliveryStep[] = DEFAULT_REDELIVERY_SCHEDULE;

/**
 * Connection limits (README, "Connection limits", says why these values):
 * - handshake 10 s: a KiteQ client sends CONN_META right after connecting, so even a slow
 *   network completes it in well under a second; 10 s leaves room for a paused client and frees
 *   a stalled socket quickly. It counts from connect and is not restarted by bytes.
 * - 10,000 connections per node: KiteQ clients hold one connection per broker and process, so
 *   this is thousands of applications, and stays under a raised file-descriptor limit.
 * - 500 per remote address: a host (or a NAT gateway) running dozens of client processes is
 *   far below it; one misbehaving host can take at most 5% of the node.
 * - 16 MiB of unsent bytes per connection: 8 frames of the largest size (2 MiB), or thousands of
 *   ordinary pushes; a consumer that reads at all never gets near it, one that stopped reading
 *   is cut off before it holds much of the broker's memory (10,000 x 16 MiB is the worst case).
 */
export const DEFAULT_CONNECTION_LIMITS = {
  handshakeTimeoutSeconds: 10,
  maxConnections: 10_000,
  maxConnectionsPerAddress: 500,
  maxWriteBufferBytes: 16 * 1024 * 1024,
} as const;

/** Settings without a default: absent unless a source gives them. */
type Optional = "adminToken" | "clusterName" | "configPath" | "databaseUrl" | "registryFile" | "nodeId";

/** The defaults (ARCHITECTURE.md, Defaults): one node on 127.0.0.1:13800, embedded PostgreSQL, static registry. */
export function defaultSettings(): Omit<Settings, Optional> {
  return {
    bind: { host: "127.0.0.1", port: 13800 },
    admin: { host: "127.0.0.1", port: 13801 },
    dataDir: "./data",
    pgPort: 0,
    registry: { kind: "static", file: null },
    logLevel: "info",
    topics: [],
    secrets: new Map(),
    batchMaxMessages: 1000,
    batchWindowMs: 0,
    leaseSeconds: 30,
    idleTimeoutSeconds: 60,
    ...DEFAULT_CONNECTION_LIMITS,
    redelivery: DEFAULT_REDELIVERY.map((s) => ({ ...s })),
    txCheckSeconds: 5,
    txCheckMaxSeconds: 60,
    txCheckBackoff: 2,
    txGiveUpSeconds: 24 * 3600,
    deliverySeconds: 5,
    recoverSeconds: 10,
    receivePermitsPerSecond: 8000,
    maxWatermark: KITEQ_MAX_WATERMARK,
    maxDeliverWorkers: 8,
    dlqExecHour: 2,
    retentionDays: 30,
    shutdownGraceSeconds: 10,
    ...DEFAULT_PUBLISH_LIMITS_SETTINGS,
  };
}
