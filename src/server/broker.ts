/**
 * One broker node: the store (embedded or external PostgreSQL), the protocol server, the
 * publish path and the delivery engine, started and stopped in order.
 */

import path from "node:path";
import type pg from "pg";
import { buildNodeStats } from "../admin/cluster.js";
import { ADMIN_REQUEST_DEADLINE_MS, type AdminServer, startAdminServer } from "../admin/index.js";
import { BROKER_VERSION } from "../admin/version.js";
import { loadRegistryFile } from "../binding/registry-file.js";
import { storeIdentity } from "../config/store-identity.js";
import type { BrokerConfig } from "../config/types.js";
import { withDeadline } from "../deadline.js";
import { Dispatcher } from "../delivery/dispatcher.js";
import { RegxRouter } from "../delivery/regx-router.js";
import { TokenBucket } from "../delivery/token-bucket.js";
import { ErrorCode, KiteqError, toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { Maintenance, type MaintenanceCounters } from "../maintenance/maintenance.js";
import { Publisher } from "../publish/publisher.js";
import { PublishHealth } from "../publish/store-health.js";
import { checkText } from "../publish/validate.js";
import { type ClusterMembership, startCluster } from "../registry/cluster.js";
import { listBindings } from "../store/bindings.js";
import { BROKER_POOL_SETTINGS, createPool, ensurePartitions, pingStore, runMigrations } from "../store/db.js";
import { type EmbeddedPostgresServer, startEmbeddedPostgres } from "../store/embedded.js";
import { cancelStatementsOf } from "../store/liveness.js";
import { insertPublishBatch, type PublishRecord, type PublishResult } from "../store/messages.js";
import { HEARTBEAT_INTERVAL_MS, heartbeatNode, markNodeStopped, registerNode } from "../store/nodes.js";
import { listenForWakeupsOnShards, type WakeSource } from "../store/notifications.js";
import {
  SHARD_CONNECT_TIMEOUT_MS,
  SHARD_DOWN_MS,
  ShardHealth,
  shardLabel,
  shardRouter,
  verifyShardList,
} from "../store/shards.js";
import { createTransactions, type Transactions } from "../tx/transactions.js";
import { secretChecker } from "./auth.js";
import { ClockSkewWatch } from "./clock-skew.js";
import { checkListenable } from "./listen-failure.js";
import { missingNodeFlags } from "./node-flags.js";
import { ProtocolServer } from "./server.js";
import type { Session, SessionHandler } from "./session.js";

/** Publish batches written at once at most (the second only under load: PUBLISH_PARALLEL_FROM). */
const PUBLISH_CONCURRENCY = 2;

/**
 * The second publish writer starts a batch only when this many publishes wait. A few producers
 * each awaiting one publish (16 x 1) never fill it: their batches are written one at a time, so
 * each commit has the WAL flush to itself (16 x 1: 7,600-8,000 instead of 6,400-7,400 msg/s, and
 * 4 groups at 5,000 msg/s: p99 16-18 instead of 17-19 ms); pipelined producers (16 x 64) still
 * get both writers (one writer: 45,000 instead of 52,000 msg/s).
 */
const PUBLISH_PARALLEL_FROM = 32;

/**
 * With several shards, a publish batch whose shard has not answered in this long is answered
 * false (a server that hangs must not hold its producers for ever; see shardWriter).
 */
const SHARD_WRITE_DEADLINE_MS = 5000;
/** How often each shard is pinged (probeShards): kiteq_shard_up follows a shard within ~this. */
const SHARD_PROBE_MS = 2000;

/** One shard of the store as a node uses it: its pools and its health. */
export interface ShardPools {
  readonly index: number;
  /** host:port/database, no credentials (logs, refusals). */
  readonly label: string;
  readonly url: string;
  /** Claims, outcomes, background statements of the dispatcher and 2PC. */
  readonly pool: pg.Pool;
  /** Publish batches (generic plans). */
  readonly publishPool: pg.Pool;
  /** The maintenance jobs of this shard. */
  readonly maintenancePool: pg.Pool;
  /**
   * What the admin server's requests read (API, /messages, /healthz): a few connections of their
   * own, each statement given up client-side after the request deadline, so requests during a
   * PostgreSQL hang take none of the connections the node's own work needs.
   */
  readonly requestPool: pg.Pool;
  readonly health: ShardHealth;
}

/** A running broker node. */
/** Connections per shard for admin requests (the console polls a few endpoints at once). */
const ADMIN_REQUEST_CONNECTIONS = 4;
/** After the grace period: the cancel of the node's statements (connect and run, each shard at once). */
const FORCE_CANCEL_MS = 1_000;
/** Then the drain, failing fast once its statements are cancelled. */
const FORCE_DRAIN_MS = 1_000;
/** Then the cleanups (pools, the embedded PostgreSQL's stop). */
const FORCE_CLEANUP_MS = 2_000;
/** Heartbeats within this long of a connection's start re-read its group's bindings (beforeHeartbeatReply). */
const SYNC_WINDOW_MS = 30_000;
/** Longest a heartbeat's answer waits for that re-read (ZooKeeper slow or away). */
const SYNC_DEADLINE_MS = 2_000;
/** The most a stop takes beyond the grace period (documented in the README). */
export const FORCE_STOP_MS = FORCE_CANCEL_MS + FORCE_DRAIN_MS + FORCE_CLEANUP_MS;

export class Broker {
  readonly address: { host: string; port: number } = { host: "", port: 0 };
  readonly publisher: Publisher;
  readonly dispatcher: Dispatcher;
  /** Claimer id of this run: the node id plus the start time, so a restart can tell its old claims. */
  readonly claimer: string;
  readonly transactions: Transactions;
  /** Liveness lock, and the cluster-wide jobs while this node holds the maintenance lock (shard 0). */
  readonly maintenance: Maintenance;
  /**
   * One Maintenance per shard, shard 0's first. Leadership is per shard (each shard's advisory
   * lock, in that shard): the work is there, a shard that is down takes only its own chores with
   * it, and each shard's takeover reads the liveness locks the nodes hold in that same shard.
   */
  readonly maintenances: Maintenance[];
  /** The shards (one with a single database URL): shard 0 holds bindings and the node list. */
  readonly shards: readonly ShardPools[];
  /** Bindings and the node list (shard 0's pool). */
  readonly pool: pg.Pool;
  /** Shard 0's URL. */
  readonly databaseUrl: string;
  private cluster: ClusterMembership | undefined;
  /** Publish batches waiting and their last outcome: /healthz, and a log line when they stall. */
  private readonly publishHealth = new PublishHealth();
  /** This node's clock against the database's, read with every heartbeat (clock-skew.ts). */
  private readonly clockSkew: ClockSkewWatch;
  /** Shard 0's uuid, recorded at the store's creation (known once open() checked the shard list). */
  private storeId: string | undefined;
  /** The admin HTTP server (/healthz, /metrics, /messages/:id), when configured. */
  admin: AdminServer | undefined;
  private readonly server: ProtocolServer;
  private readonly cleanups: (() => void | Promise<void>)[] = [];
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: BrokerConfig,
    private readonly log: Logger,
    shards: readonly ShardPools[],
  ) {
    this.shards = shards;
    this.clockSkew = new ClockSkewWatch(log);
    const pool = shards[0]!.pool;
    this.pool = pool;
    this.databaseUrl = shards[0]!.url;
    const sharded = shards.length > 1;
    this.claimer = `${config.nodeId}/${Date.now().toString(36)}`;
    this.maintenances = shards.map(
      (shard) =>
        new Maintenance({
          url: shard.url,
          pool: shard.maintenancePool,
          poolName: poolNames(config.nodeId).maintenance,
          nodeId: config.nodeId,
          claimer: this.claimer,
          address: `${config.bind.host}:${config.bind.port}`,
          leaseMs: config.leaseSeconds * 1000,
          log: log.child(
            sharded ? { component: "maintenance", shard: shard.index } : { component: "maintenance" },
          ),
          sweepMs: config.recoverSeconds * 1000,
          retentionDays: config.retentionDays,
          onDeclaredDead: () => this.dispatcher.dropHeld(),
        }),
    );
    this.maintenance = this.maintenances[0]!;
    const router = shardRouter(shards.length);
    this.dispatcher = new Dispatcher({
      pool,
      pools: shards.map((s) => s.pool),
      nodeId: config.nodeId,
      claimer: this.claimer,
      log: log.child({ component: "delivery" }),
      deliveryTimeoutMs: config.deliverySeconds * 1000,
      leaseMs: config.leaseSeconds * 1000,
      pollMs: config.recoverSeconds * 1000,
      redelivery: config.redelivery,
      nonPersistentNeedsLocalConsumer: config.registry.kind === "static",
      maxWatermark: config.maxWatermark,
    });
    this.publisher = this.createPublisher();
    this.transactions = createTransactions({
      pool,
      pools: shards.map((s) => s.pool),
      shardOf: router.of,
      config,
      nodeId: config.nodeId,
      claimer: this.claimer,
      dispatcher: this.dispatcher,
      log: log.child({ component: "tx" }),
    });
    this.server = new ProtocolServer(this.sessionHandler(), {
      idleTimeoutMs: config.idleTimeoutSeconds * 1000,
      handshakeTimeoutMs: config.connections.handshakeTimeoutSeconds * 1000,
      maxConnections: config.connections.maxConnections,
      maxConnectionsPerAddress: config.connections.maxConnectionsPerAddress,
      maxWriteBufferBytes: config.connections.maxWriteBufferBytes,
      logger: log,
    });
  }

  /**
   * Start a node with `config`; resolves once it accepts connections. `signal` (SIGINT/SIGTERM
   * during startup) stops what started and rejects with its reason.
   */
  static async start(
    config: BrokerConfig,
    log: Logger,
    options: { signal?: AbortSignal } = {},
  ): Promise<Broker> {
    const { signal } = options;
    signal?.throwIfAborted();
    // A registry file that cannot be read or parsed is a config error said before anything starts
    // (it came after the embedded PostgreSQL had started, 3-7 s in).
    if (config.registry.kind === "static" && config.registry.file !== null) {
      await loadRegistryFile(config.registry.file);
    }
    // So is an address in use (said after the store had started, migrated and led maintenance).
    await checkListenable(config.bind.host, config.bind.port, "--bind");
    if (config.admin !== null) await checkListenable(config.admin.host, config.admin.port, "--admin");
    let embedded: EmbeddedPostgresServer | undefined;
    let urls = config.databaseUrls;
    if (urls.length === 0) {
      embedded = await startEmbeddedPostgres({
        dataDir: path.join(config.dataDir, "pg"),
        port: config.pgPort,
        logger: log,
      });
      urls = [embedded.url("kiteq")];
    }
    const sharded = urls.length > 1;
    // Every statement of the node runs under a statement_timeout (a statement that a plan gone
    // wrong would keep running for minutes fails instead, and its job retries in bounded batches)
    // and with sequential scans priced out (see BROKER_POOL_SETTINGS).
    const timeout = BROKER_POOL_SETTINGS;
    const connectTimeoutMs = sharded ? SHARD_CONNECT_TIMEOUT_MS : undefined;
    const shards: ShardPools[] = urls.map((url, index) => {
      const names = poolNames(config.nodeId);
      // A multi-host URL: every pool's new connections go to the current primary (store/failover.ts).
      const plog = sharded ? log.child({ shard: index }) : log;
      return {
        index,
        label: shardLabel(url),
        url,
        pool: createPool(url, { max: 10, name: names.main, settings: timeout, connectTimeoutMs, log: plog }),
        // Publishes get connections of their own (one per concurrent batch), with generic plans
        // as every pool (the batch insert's plan never depends on its values, and planning it
        // each time cost ~20%).
        publishPool: createPool(url, {
          max: PUBLISH_CONCURRENCY,
          name: names.publish,
          settings: timeout,
          connectTimeoutMs,
          log: plog,
        }),
        maintenancePool: createPool(url, {
          max: 2,
          name: names.maintenance,
          settings: timeout,
          connectTimeoutMs,
          log: plog,
        }),
        requestPool: createPool(url, {
          max: ADMIN_REQUEST_CONNECTIONS,
          name: names.admin,
          // Server-side too: a read the request gave up on stops then instead of running on.
          settings: { ...timeout, statement_timeout: String(ADMIN_REQUEST_DEADLINE_MS) },
          // Also the longest a request waits for one of these connections.
          connectTimeoutMs: Math.min(
            connectTimeoutMs ?? ADMIN_REQUEST_DEADLINE_MS,
            ADMIN_REQUEST_DEADLINE_MS,
          ),
          queryTimeoutMs: ADMIN_REQUEST_DEADLINE_MS,
          log: plog,
        }),
        health: new ShardHealth(index, shardLabel(url)),
      };
    });
    const broker = new Broker(config, log, shards);
    for (const s of shards) {
      broker.cleanups.push(
        () => s.pool.end(),
        () => s.publishPool.end(),
        () => s.maintenancePool.end(),
        () => s.requestPool.end(),
      );
    }
    if (embedded) broker.cleanups.push(() => embedded.stop());
    try {
      await broker.open(signal);
    } catch (err) {
      // Tear down whatever started (listener, dispatcher, transactions, store).
      await broker.stop();
      throw err;
    }
    return broker;
  }

  private async open(signal: AbortSignal | undefined): Promise<void> {
    const { config, pool, log, shards } = this;
    signal?.throwIfAborted();
    // Every shard is migrated (same schema everywhere) and must answer at start.
    await Promise.all(shards.map((s) => runMigrations(s.pool, log, undefined, signal)));
    // The shard list recorded at the store's creation must be the one given (refusal otherwise).
    this.storeId = (
      await verifyShardList(
        shards.map((s) => s.pool),
        shards.map((s) => s.label),
      )
    )[0];
    if (shards.length > 1) {
      log.info({ shards: shards.map((s) => s.label) }, `store sharded over ${shards.length} databases`);
    }
    // The history has no default partition: today's and the coming days' must exist before the
    // first publish (the maintenance node keeps them coming, hourly).
    await Promise.all(shards.map((s) => ensurePartitions(s.pool, new Date())));
    signal?.throwIfAborted();
    for (const m of this.maintenances) {
      await m.start();
      this.cleanups.unshift(() => m.stop());
    }
    const wake: WakeSource = await listenForWakeupsOnShards(
      shards.map((s) => s.url),
      log,
    );
    wake.onBindingsChanged(() => void this.reloadBindings());
    wake.onTxDue(() => this.transactions.wake());
    await this.reloadBindings();
    await this.dispatcher.start(wake);
    // Messages published in SQL to topics with Regx bindings: matched here (kiteq_publish cannot
    // read Go's regexp syntax).
    const router = new RegxRouter(
      shards.map((s) => s.maintenancePool),
      log.child({ component: "regx-routing" }),
    );
    wake.onRoute(() => router.wake());
    router.start();
    this.cleanups.unshift(() => router.stop());
    await this.transactions.start();
    const address = await this.server.listen(config.bind.host, config.bind.port);
    Object.assign(this.address, address);
    await registerNode(pool, config.nodeId, `${address.host}:${address.port}`, new Date());
    // Every heartbeat carries the node's stats snapshot (version, consumers and counters per
    // group): the admin API of any node shows the whole cluster from them (admin/cluster.ts).
    const beat = async () => {
      const sentMs = Date.now();
      const databaseMs = await heartbeatNode(
        pool,
        config.nodeId,
        new Date(sentMs),
        buildNodeStats({
          at: Date.now(),
          version: BROKER_VERSION,
          published: this.publisher.counters.accepted,
          pushed: this.dispatcher.counters.pushed,
          counters: this.dispatcher.groupCounters.all(),
          consumers: this.dispatcher.consumerCounts(),
          held: this.dispatcher.heldCounts(),
        }),
      ).catch((err: Error) => {
        log.warn({ err: err.message, code: "KQ_STORE_FAILED" }, "node heartbeat not written");
        return undefined;
      });
      if (databaseMs !== undefined) this.clockSkew.observe({ sentMs, receivedMs: Date.now(), databaseMs });
    };
    await beat();
    const heartbeat = setInterval(() => void beat(), HEARTBEAT_INTERVAL_MS);
    heartbeat.unref();
    this.cleanups.unshift(async () => {
      clearInterval(heartbeat);
      await markNodeStopped(pool, config.nodeId, new Date());
    });
    // A publish batch that waits on PostgreSQL (a lock, a stalled server) logs nothing else.
    let stalledSince: number | undefined;
    const stallWatch = setInterval(() => {
      const now = Date.now();
      const problem = this.publishHealth.problem(now);
      if (problem !== undefined && stalledSince === undefined) {
        stalledSince = now;
        log.warn(
          { code: ErrorCode.StoreFailed, problem },
          "publishes cannot be stored now; /healthz answers 503",
        );
      } else if (problem === undefined && stalledSince !== undefined) {
        log.info(
          { afterSec: Number(((now - stalledSince) / 1000).toFixed(1)) },
          "publishes are stored again",
        );
        stalledSince = undefined;
      }
    }, 1_000);
    stallWatch.unref();
    this.cleanups.unshift(() => clearInterval(stallWatch));
    if (shards.length > 1) this.probeShards();
    if (config.admin !== null) {
      const admin = await startAdminServer({
        host: config.admin.host,
        port: config.admin.port,
        token: config.adminToken,
        storeId: storeIdentity(config),
        storeProblem: () => this.publishHealth.problem(Date.now()),
        ...(this.shards.length > 1
          ? {
              shardsDown: () =>
                this.shards
                  .filter((s) => s.health.unhealthy)
                  .map((s) => ({ shard: s.index, label: s.label, reason: s.health.reason || "unreachable" })),
            }
          : {}),
        pool,
        shardPools: this.shards.map((s) => s.pool),
        requestPools: this.shards.map((s) => s.requestPool),
        log: log.child({ component: "admin" }),
        metrics: {
          publishCounters: () => this.publisher.counters,
          deliveryCounters: () => this.dispatcher.counters,
          batchStats: () => this.publisher.batchStats,
          sessionsConnected: () => this.server.sessions.size,
          clockSkewSeconds: () => this.clockSkew.skewSeconds,
          registryRegistered: () => this.cluster?.isRegistered?.(),
          maintenanceCounters: () => this.maintenanceCounters(),
          ...(this.shards.length > 1 ? { shardsUp: () => this.shards.map((s) => !s.health.unhealthy) } : {}),
          groupCounters: () => this.dispatcher.groupCounters.all(),
          txCounters: () => this.transactions.counters(),
          latencies: () => ({
            publishStore: this.publisher.storeLatency,
            publishToDeliver: this.dispatcher.latency.publishToDeliver,
            claim: this.dispatcher.latency.claim,
          }),
        },
        api: {
          nodeId: config.nodeId,
          version: BROKER_VERSION,
          startedAt: new Date(),
          consumers: () => this.dispatcher.consumerCounts(),
          topics: config.topics,
        },
      });
      this.admin = admin;
      this.cleanups.unshift(() => admin.close());
    }
    this.cluster = await startCluster({
      pool,
      config,
      address: `${address.host}:${address.port}`,
      dispatcher: this.dispatcher,
      releaseTransactionsOfNode: (nodeId) => this.transactions.releaseClaimsOfNode(nodeId),
      isMaintenanceNode: () => this.maintenance.isLeader,
      storeId: this.storeId,
      log: log.child({ component: "registry" }),
      signal,
    });
    // The registry has written its bindings (a registry file's, ZooKeeper's) to the table: read
    // them now, not on their notification, so the node starts with them and says how many
    // (it logged "bindings":0 with a registry file's binding in force).
    await this.reloadBindings();
    log.info(
      {
        address: `${address.host}:${address.port}`,
        nodeId: config.nodeId,
        bindings: this.dispatcher.bindings.length,
      },
      "broker started",
    );
    const missing = missingNodeFlags();
    if (missing.length > 0) {
      log.warn(
        { missing },
        "Node.js started without the broker's heap flags: expect more GC pauses and a higher p99 latency (see src/server/node-flags.ts)",
      );
    }
  }

  /** The maintenance counters of every shard, summed (one shard: shard 0's as they are). */
  maintenanceCounters(): MaintenanceCounters {
    if (this.maintenances.length === 1) return this.maintenance.counters;
    const sum: MaintenanceCounters = {
      expired: 0,
      takeovers: 0,
      takeoverChecks: 0,
      takeoverSeconds: [],
      droppedPartitions: 0,
    };
    for (const { counters: c } of this.maintenances) {
      sum.expired += c.expired;
      sum.takeovers += c.takeovers;
      sum.takeoverChecks += c.takeoverChecks;
      sum.takeoverSeconds.push(...c.takeoverSeconds);
      sum.droppedPartitions += c.droppedPartitions;
    }
    return sum;
  }

  /** Re-read the bindings table into the delivery engine. */
  async reloadBindings(): Promise<void> {
    try {
      this.dispatcher.setBindings(
        await listBindings(this.pool, undefined, (row) =>
          this.log.warn(
            {
              code: ErrorCode.BindingInvalid,
              group: row.groupId,
              topic: row.topic,
              messageType: row.messageType,
              reason: row.reason,
            },
            "a row of the bindings table is not a valid binding: left out (the others apply)",
          ),
        ),
      );
    } catch (err) {
      const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
      this.log.error(
        { code: e.code, err: e.message },
        "reloading bindings failed; keeping the previous ones",
      );
    }
  }

  /**
   * Graceful stop: stop accepting, flush and ack pending publishes, stop the background jobs,
   * release claims, close sessions, stop the store. When that takes longer than
   * `config.shutdownGraceSeconds`, what still runs is cancelled and the node stops anyway; it
   * always ends (the claims it could not release lapse with its lease, or its liveness lock).
   */
  stop(): Promise<void> {
    this.stopping ??= this.stopWithin(this.config.shutdownGraceSeconds * 1000);
    return this.stopping;
  }

  private async stopWithin(graceMs: number): Promise<void> {
    const graceful = this.doStop();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<"expired">((resolve) => {
      timer = setTimeout(() => resolve("expired"), graceMs);
    });
    const outcome = await Promise.race([graceful.then(() => "done" as const), expired]);
    clearTimeout(timer);
    if (outcome === "done") return;
    this.log.warn(
      { graceSeconds: graceMs / 1000 },
      "shutdown grace period over: cancelling the statements still running and stopping",
    );
    await this.forceStop(graceful);
  }

  /**
   * The grace period ran out: close the client connections (their producers and consumers go to
   * other nodes now, not at the end), cancel this node's statements, give the drain a moment,
   * stop anyway. Each step has its own bound, FORCE_STOP_MS in all: a database server that does
   * not answer at all (a hung shard) made this take 7 s more.
   */
  private async forceStop(graceful: Promise<void>): Promise<void> {
    this.server.closeSessions();
    await Promise.all(
      this.shards.map(async (shard) => {
        const names = poolNames(this.config.nodeId);
        const admin = createPool(shard.url, {
          max: 1,
          name: `kiteq-pg ${this.config.nodeId} shutdown`,
          connectTimeoutMs: FORCE_CANCEL_MS,
        });
        try {
          const cancelled = await withDeadline(
            cancelStatementsOf(admin, [names.main, names.publish, names.maintenance, names.admin]),
            FORCE_CANCEL_MS,
          );
          this.log.info({ cancelled, shard: shard.index }, "cancelled the node's running statements");
        } catch (err) {
          this.log.warn({ err: toKiteqError(err).message }, "could not cancel the node's statements");
        } finally {
          await admin.end().catch(() => undefined);
        }
      }),
    );
    // The graceful path now fails fast (its statements were cancelled); wait for it briefly.
    await withDeadline(graceful, FORCE_DRAIN_MS).catch(() => undefined);
    await withDeadline(this.runCleanups(), FORCE_CLEANUP_MS).catch(() => undefined);
    // What the operator will see again: a stop during an outage said only "cleanup failed".
    const left = this.dispatcher.leftBehind();
    if (left.unwrittenOutcomes > 0 || left.heldDeliveries > 0) {
      this.log.warn(
        { ...left, leaseSeconds: this.config.leaseSeconds },
        `stopped with ${left.unwrittenOutcomes} delivery outcome(s) (acks, nacks, releases) not written and ${left.heldDeliveries} delivery(ies) still claimed by this node: they are delivered again when their leases run out (at most --lease-seconds), or at once if this node's liveness lock is gone`,
      );
    }
    this.log.info("broker stopped (forced after the grace period)");
  }

  private async doStop(): Promise<void> {
    this.log.info("broker stopping");
    const accepting = this.server.stopAccepting();
    await this.publisher.drain();
    // Background jobs first: they hold pool connections and must not start new batches.
    await Promise.all(this.maintenances.map((m) => m.stopJobs()));
    // Release our claims first, then give up the liveness lock and leave the registry: other
    // nodes release what a departed node held, which must not happen while this node is still
    // pushing it.
    await this.transactions.stop();
    // Answers of pushes in flight: at most one delivery timeout, and half the grace period.
    await this.dispatcher.stop(
      Math.min(this.config.deliverySeconds * 1000, (this.config.shutdownGraceSeconds * 1000) / 2),
    );
    await Promise.all(this.maintenances.map((m) => m.stop()));
    await this.cluster?.stop();
    this.server.closeSessions();
    await accepting;
    await this.runCleanups();
    this.log.info("broker stopped");
  }

  private async runCleanups(): Promise<void> {
    for (const c of this.cleanups.splice(0)) {
      try {
        await c();
      } catch (err) {
        this.log.error({ err: toKiteqError(err).message }, "cleanup failed");
      }
    }
  }

  private createPublisher(): Publisher {
    const { config, shards } = this;
    const topics = new Set(config.topics);
    const permits =
      config.receivePermitsPerSecond > 0
        ? TokenBucket.forReceivePermits(config.receivePermitsPerSecond)
        : undefined;
    const dispatcher = this.dispatcher;
    const sharded = shards.length > 1;
    const router = shardRouter(shards.length);
    return new Publisher(
      {
        servesTopic: topics.size === 0 ? () => true : (t) => topics.has(t),
        admit: () => permits === undefined || permits.tryTake(1),
        planDeliveries: (h) => dispatcher.planDeliveries(h),
        deliverFly: (h, body, isString) => dispatcher.deliverFly(h, body, isString),
        afterWrite: (records, results, shard) => dispatcher.afterWrite(records, results, shard),
      },
      shards.map((shard) => {
        const write = this.publishWriter(shard);
        return sharded ? this.shardWriter(shard, write) : write;
      }),
      {
        maxBatch: config.batch.maxMessages,
        concurrency: PUBLISH_CONCURRENCY,
        parallelFrom: PUBLISH_PARALLEL_FROM,
        windowMs: config.batch.windowMs,
        limits: config.publishLimits,
        ownGroupOnly: config.secrets.size > 0,
        shardOf: router.of,
        shardDown: (i) => {
          const h = shards[i]!.health;
          return h.isDown() ? h.refusal() : undefined;
        },
      },
      this.log.child({ component: "publish" }),
    );
  }

  /** Write one publish batch to `shard` (one transaction: insertPublishBatch). */
  private publishWriter(shard: ShardPools): (records: PublishRecord[]) => Promise<PublishResult[]> {
    const { config, log, publishHealth } = this;
    const writeOnce = async (records: PublishRecord[]): Promise<PublishResult[]> => {
      const write = () => {
        const now = new Date();
        return insertPublishBatch(shard.publishPool, records, {
          now,
          nodeId: config.nodeId,
          leaseUntil: new Date(now.getTime() + config.leaseSeconds * 1000),
          firstTxCheckAt: new Date(now.getTime() + config.txCheck.firstCheckSeconds * 1000),
        });
      };
      try {
        return await write();
      } catch (err) {
        // No partition for today (upkeep has not run for a week, or the clock jumped): create
        // the days and write again, rather than let the batch be split message by message.
        if (!isMissingPartition(err)) throw err;
        log.warn("no history partition for the receive time: creating the partitions now");
        await ensurePartitions(shard.pool, new Date());
        return await write();
      }
    };
    // Several shards: each has its own health (ShardHealth; a shard down leaves the others up).
    if (this.shards.length > 1) return writeOnce;
    // Every batch's wait and outcome: /healthz and the stall log line read them (store-health.ts).
    return async (records) => {
      const id = publishHealth.begin(Date.now());
      try {
        const results = await writeOnce(records);
        publishHealth.finished(id, Date.now());
        return results;
      } catch (err) {
        publishHealth.finished(id, Date.now(), toKiteqError(err, {}, ErrorCode.StoreFailed).message);
        throw err;
      }
    };
  }

  /**
   * With several shards, ping every shard each SHARD_PROBE_MS. A shard's health (kiteq_shard_up,
   * /healthz aside) was learned from this node's publishes alone: with none going to it (a quiet
   * hour, a node only consumers use) a stopped shard read kiteq_shard_up 1 for as long as it was
   * down, and one back up after an outage read 0 until the next publish. Each ping has a connection
   * of its own (a pool of one per shard), so the node's busy pools cannot make a shard look down.
   */
  private probeShards(): void {
    const { log } = this;
    const probing = new Set<number>();
    const pools = this.shards.map((s) =>
      createPool(s.url, {
        max: 1,
        name: "kiteq-pg shard probe",
        connectTimeoutMs: SHARD_CONNECT_TIMEOUT_MS,
        log: log.child({ shard: s.index }),
      }),
    );
    const probe = () => {
      for (const shard of this.shards) {
        if (probing.has(shard.index)) continue;
        probing.add(shard.index);
        const { health } = shard;
        withDeadline(
          pingStore(pools[shard.index]!, SHARD_CONNECT_TIMEOUT_MS),
          SHARD_CONNECT_TIMEOUT_MS,
          () => new Error(`no answer within ${SHARD_CONNECT_TIMEOUT_MS / 1000} s`),
        )
          .then(
            () => {
              // Not while a publish failure of the last second stands (a batch waiting on a lock
              // re-marks it every half second): the writes' own verdict wins then.
              if (!health.unhealthy || health.isDown()) return;
              log.info(
                {
                  shard: shard.index,
                  label: shard.label,
                  downSec: Math.round((Date.now() - health.downSince) / 1000),
                },
                "shard answers again: publishes to it resume",
              );
              health.up();
            },
            (err: unknown) => {
              const first = !health.unhealthy;
              if (health.failed(err) && first) {
                log.warn(
                  { code: ErrorCode.StoreFailed, shard: shard.index, label: shard.label, err: health.reason },
                  "shard does not answer: publishes to it are refused, kiteq_shard_up 0",
                );
              }
            },
          )
          .finally(() => probing.delete(shard.index));
      }
    };
    const timer = setInterval(probe, SHARD_PROBE_MS);
    timer.unref();
    this.cleanups.unshift(() => clearInterval(timer), ...pools.map((p) => () => p.end()));
  }

  /**
   * With several shards: a shard that is down is refused at once (for a second after each
   * connection failure, then tried again), and its failures name the shard.
   */
  private shardWriter(
    shard: ShardPools,
    write: (records: PublishRecord[]) => Promise<PublishResult[]>,
  ): (records: PublishRecord[]) => Promise<PublishResult[]> {
    const { health } = shard;
    return async (records) => {
      // Nothing written: the producers hear "not stored" (see Publisher), not "store failed".
      if (health.isDown()) throw new KiteqError(ErrorCode.StoreFailed, health.refusal(), { stored: false });
      // A shard that hangs (no error, no answer): while this write waits longer than
      // SHARD_CONNECT_TIMEOUT_MS, new publishes to it are refused at once rather than queued.
      const started = Date.now();
      const slow = setInterval(() => {
        if (Date.now() - started < SHARD_CONNECT_TIMEOUT_MS) return;
        health.failed(new Error(`no answer within ${SHARD_CONNECT_TIMEOUT_MS / 1000} s`));
      }, SHARD_DOWN_MS / 2);
      try {
        const results = await withDeadline(write(records), SHARD_WRITE_DEADLINE_MS, () => {
          health.failed(new Error(`no answer within ${SHARD_WRITE_DEADLINE_MS / 1000} s`));
          // The batch may still commit: its producers are told false and re-send, and a re-sent
          // messageId is acked again and stored once (publishing is idempotent).
          return new KiteqError(ErrorCode.StoreFailed, health.refusal());
        });
        if (health.unhealthy) {
          this.log.info(
            { shard: shard.index, label: shard.label },
            "shard answers again: publishes to it resume",
          );
        }
        health.up();
        return results;
      } catch (err) {
        if (!health.failed(err)) throw err;
        throw new KiteqError(ErrorCode.StoreFailed, health.refusal(), {}, { cause: err });
      } finally {
        clearInterval(slow);
      }
    };
  }

  /**
   * A heartbeat in the first SYNC_WINDOW_MS of a connection (ZooKeeper registry): answered once
   * this node has re-read the group's bindings in ZooKeeper and applied a change. A consumer
   * writes its bindings after connecting, and this node learns of them by a watch, a moment
   * later: what was published meanwhile was never owed to the group. The SDK's createConsumer
   * heartbeats after writing them, so it resolves once its brokers apply them (a walkthrough lost
   * the first messages sent after it resolved). Any KiteQ client's heartbeat is answered as before,
   * at most SYNC_DEADLINE_MS later.
   */
  private beforeHeartbeatReply(s: Session): Promise<void> | undefined {
    const sync = this.cluster?.syncGroup;
    const groupId = s.groupId;
    if (sync === undefined || groupId === undefined || Date.now() - s.connectedAtMs > SYNC_WINDOW_MS) {
      return undefined;
    }
    const applied = sync(groupId).then(async (changed) => {
      if (changed) await this.reloadBindings();
    });
    return withDeadline(applied, SYNC_DEADLINE_MS).catch(() => undefined);
  }

  private sessionHandler(): SessionHandler {
    // Constant-time, one refusal text for every failure (src/server/auth.ts).
    const checkSecret = secretChecker(this.config.secrets);
    return {
      // The group name goes into history rows and claim statements: refused when PostgreSQL
      // could not hold it (a NUL byte, broken UTF-8) or it is over the names' bound.
      authenticate: (meta) =>
        (meta.groupId === ""
          ? "invalid groupId: empty"
          : checkText("groupId", meta.groupId, this.config.publishLimits.maxNameBytes)) ??
        checkSecret(meta.groupId, meta.secretKey),
      onAuthenticated: (s) => {
        this.dispatcher.addSession(s);
        this.transactions.onSession(s);
      },
      onPublish: (s, opaque, msg, isString) => this.publisher.publish(s, opaque, msg, isString),
      onDeliverAck: (s, opaque, ack) => this.dispatcher.onDeliverAck(s, opaque, ack),
      onTxAck: (s, opaque, tx) => this.transactions.onTxAck(s, opaque, tx),
      beforeHeartbeatReply: (s) => this.beforeHeartbeatReply(s),
      onClose: (s) => {
        this.dispatcher.removeSession(s);
        this.transactions.onSessionClosed(s);
      },
    };
  }
}

/** application_name of each of a node's pools in a shard (its statements can be found and cancelled). */
function poolNames(nodeId: string): { main: string; publish: string; maintenance: string; admin: string } {
  // The same in every shard: a node's statements are its own whichever shard runs them.
  return {
    main: `kiteq-pg ${nodeId}`,
    publish: `kiteq-pg ${nodeId} publish`,
    maintenance: `kiteq-pg ${nodeId} maintenance`,
    admin: `kiteq-pg ${nodeId} admin`,
  };
}

/**
 * "no partition of relation ... found for row": the tables the publish statement writes have no
 * CHECK constraint, so check_violation (23514) can only come from tuple routing.
 */
function isMissingPartition(err: unknown): boolean {
  return (err as { code?: unknown }).code === "23514";
}
