/**
 * The broker's configuration, as the rest of the code sees it: one typed, validated, read-only
 * object. How it is built (defaults < cluster.toml < KITEQ_* environment < flags) is in load.ts.
 */

/** A TCP listen address. `":port"` in the input means host `0.0.0.0`. */
export interface BindAddress {
  /** Host name or IP address (IPv6 without brackets). */
  readonly host: string;
  /** Port, 0-65535 (0 = any free port, chosen by the OS). */
  readonly port: number;
}

/** pino's level names. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Where brokers and bindings are registered. */
export type RegistryConfig =
  | {
      /** Single node, no ZooKeeper: bindings from the table (and the YAML file, if any). */
      readonly kind: "static";
      /** KiteQ's YAML file registry to read bindings from, or null. */
      readonly file: string | null;
    }
  | {
      /** KiteQ's ZooKeeper layout (/kiteq/server, /kiteq/sub, ...). */
      readonly kind: "zookeeper";
      /** `host:port` of each ZooKeeper server (port defaults to 2181). */
      readonly hosts: readonly string[];
      /** ZooKeeper session timeout (KiteQ's `?timeout=` URI parameter); default 30 s. */
      readonly sessionTimeoutMs: number;
    };

/** One step of the redelivery schedule (see src/delivery/schedule.ts). */
import type { RedeliveryStep } from "../delivery/schedule.js";

export type { RedeliveryStep };

/** When an uncommitted (2PC) message's producer is asked (TxACK) whether to commit it. */
export interface TxCheckConfig {
  /** First check this many seconds after the message was received. */
  readonly firstCheckSeconds: number;
  /** Each later interval is the previous one times this factor (>= 1)... */
  readonly backoffFactor: number;
  /** ...but never longer than this. */
  readonly maxIntervalSeconds: number;
  /** After this many seconds without an answer the broker stops asking and gives the message up. */
  readonly giveUpSeconds: number;
}

/** Publish group commit: a batch is written when it is full or its window has passed. */
export interface BatchConfig {
  /** At most this many messages in one transaction. */
  readonly maxMessages: number;
  /** A message waits at most this long (ms) for others to join its batch; 0 = no wait. */
  readonly windowMs: number;
}

/** What a client may send in one publish (README, "Limits on what a client may send"). */
export type { PublishLimits } from "../publish/limits.js";

import type { PublishLimits } from "../publish/limits.js";
/** Per-connection and per-node connection limits (README, "Connection limits"). */
export interface ConnectionLimits {
  /** A connection that has not completed its handshake this long after connect is closed; default 10. */
  readonly handshakeTimeoutSeconds: number;
  /** Connections open at once on this node; more are closed at once; 0 = no limit; default 10,000. */
  readonly maxConnections: number;
  /** Connections open at once from one remote address; 0 = no limit; default 500. */
  readonly maxConnectionsPerAddress: number;
  /** Unsent bytes a connection may hold (a consumer that stopped reading); past it it is closed; default 16 MiB. */
  readonly maxWriteBufferBytes: number;
}

/** The validated configuration of one broker node. */
export interface BrokerConfig {
  /** Address the KiteQ protocol server listens on (`-bind`); default 127.0.0.1:13800. */
  readonly bind: BindAddress;
  /**
   * Admin HTTP server (/healthz, /metrics) address (`-pport`, `--admin`); default
   * 127.0.0.1:13801; null = disabled (`-pport=-1`, KiteQ's default, or `0`).
   */
  readonly admin: BindAddress | null;
  /** The admin address was given (flag, environment or config file), not the default. */
  readonly adminGiven: boolean;
  /**
   * Bearer token the admin server requires (`--admin-token`, KITEQ_ADMIN_TOKEN) on everything
   * but /healthz; null = none, allowed only on a loopback admin address.
   */
  readonly adminToken: string | null;
  /** This node's id (claims, leases, logs); default `host:port` of bind, wildcard host -> hostname. */
  readonly nodeId: string;
  /** The `[clusters.X]` used from the config file, or null when there was none. */
  readonly clusterName: string | null;
  /** The cluster.toml read (`-configPath`), or null. */
  readonly configPath: string | null;
  /** PostgreSQL URL (postgres:// or postgresql://), or null = embedded PostgreSQL under dataDir. */
  readonly databaseUrl: string | null;
  /**
   * Every PostgreSQL URL given, in order: one, or the shards of the store (a message lives in
   * shard fnv1a32(messageId) % count, store/shard-hash.ts). Empty = embedded PostgreSQL.
   * databaseUrl is the first of them (shard 0: bindings and the node list).
   */
  readonly databaseUrls: readonly string[];
  /** Directory of the embedded PostgreSQL's data, relative to the working directory; "./data". */
  readonly dataDir: string;
  /** Port of the embedded PostgreSQL on 127.0.0.1 (`--pg-port`); 0 (default) = a free port. */
  readonly pgPort: number;
  /** Registry mode: static (default) or ZooKeeper. */
  readonly registry: RegistryConfig;
  /** Root log level; default "info". */
  readonly logLevel: LogLevel;
  /**
   * Topics this node serves. Empty (the default) = every topic, allowed only with the static
   * registry; ZooKeeper mode requires a list (each topic is registered under /kiteq/server).
   */
  readonly topics: readonly string[];
  /** Secret per groupId, checked at handshake; empty = any secret accepted (KiteQ's behaviour). */
  readonly secrets: ReadonlyMap<string, string>;
  /**
   * Publish group commit (default 1000 messages, no window: a batch is written as soon as a writer
   * is free, and batches grow with load because both writers are busy; measured, a 2 ms window
   * only added latency).
   */
  readonly batch: BatchConfig;
  /** How long a node's claim on a delivery lasts without renewal; default 30 s. */
  readonly leaseSeconds: number;
  /** A client connection silent for this long is closed; default 60 s. */
  readonly idleTimeoutSeconds: number;
  /** Limits that keep one client from holding the node's resources (see ConnectionLimits). */
  readonly connections: ConnectionLimits;
  /** Redelivery delays by attempt number; default KiteQ's (see DEFAULT_REDELIVERY). */
  readonly redelivery: readonly RedeliveryStep[];
  /** Two-phase commit check-back policy; default first after 5 s, x2, at most 60 s, give up after 24 h. */
  readonly txCheck: TxCheckConfig;
  /** KiteQ deliverySeconds: how long a push waits for the consumer's ack; default 5. */
  readonly deliverySeconds: number;
  /** KiteQ recoverSeconds: period of the scan for due deliveries (backstop of NOTIFY); default 10. */
  readonly recoverSeconds: number;
  /** KiteQ recievePermitsPerSecond (sic): publishes accepted per second; 0 = unlimited; default 8000. */
  readonly receivePermitsPerSecond: number;
  /**
   * Cap on a group's watermark (deliveries per second): KiteQ's 6,000 by default; 0 = no cap, so
   * a binding's watermark above 6,000 takes effect.
   */
  readonly maxWatermark: number;
  /** KiteQ maxDeliverWorkers: pushes in flight per node; default 8. */
  readonly maxDeliverWorkers: number;
  /** KiteQ dlqExecHour: hour of day (0-23, local time) of the dead-letter job; default 2. */
  readonly dlqExecHour: number;
  /**
   * History retention: daily partitions of messages and message_events older than this many
   * days are dropped (hourly check); 0 keeps everything. Default 30. At least 8 when set, so a
   * message is never dropped while it may still be owed (expiry is at most 7 days).
   */
  readonly retentionDays: number;
  /**
   * SIGTERM: how long the node drains (pending publishes acked, outcomes written, claims released)
   * before it cancels what is still running and exits anyway; default 10 s.
   */
  readonly shutdownGraceSeconds: number;
  /**
   * Limits of a publish's header: topic, messageType and groupId at most 255 bytes (UTF-8), at
   * most 64 properties and 64 KiB of property keys and values (maxNameBytes, maxProperties,
   * maxPropertiesBytes).
   */
  readonly publishLimits: PublishLimits;
}

/** What loadConfig returns: the config and what was accepted but is worth telling the operator. */
export interface LoadedConfig {
  readonly config: BrokerConfig;
  /** One line each: unknown keys in the file, ignored values, unknown KITEQ_* variables. */
  readonly warnings: string[];
}
