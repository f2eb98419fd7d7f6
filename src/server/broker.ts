/**
 * One broker node: the store (embedded or external PostgreSQL), the protocol server, the
 * publish path and the delivery engine, started and stopped in order.
 */
import path from "node:path";
import type pg from "pg";
import { type AdminServer, startAdminServer } from "../admin/index.js";
import type { BrokerConfig } from "../config/types.js";
import { Dispatcher } from "../delivery/dispatcher.js";
import { TokenBucket } from "../delivery/token-bucket.js";
import { ErrorCode, toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { Publisher } from "../publish/publisher.js";
import { type ClusterMembership, startCluster } from "../registry/cluster.js";
import { listBindings } from "../store/bindings.js";
import { createPool, dropPartitionsBefore, ensurePartitions, runMigrations } from "../store/db.js";
import { type EmbeddedPostgresServer, startEmbeddedPostgres } from "../store/embedded.js";
import { insertPublishBatch } from "../store/messages.js";
import { heartbeatNode, markNodeStopped, registerNode } from "../store/nodes.js";
import { listenForWakeups, type WakeSource } from "../store/notifications.js";
import { createTransactions, type Transactions } from "../tx/transactions.js";
import { missingNodeFlags } from "./node-flags.js";
import { ProtocolServer } from "./server.js";
import type { SessionHandler } from "./session.js";

const HOUR = 3_600_000;
/** Publish batches written at once: one fills while the other commits. */
const PUBLISH_CONCURRENCY = 2;

/** A running broker node. */
export class Broker {
  readonly address: { host: string; port: number } = { host: "", port: 0 };
  readonly publisher: Publisher;
  readonly dispatcher: Dispatcher;
  /** Claimer id of this run: the node id plus the start time, so a restart can tell its old claims. */
  readonly claimer: string;
  readonly transactions: Transactions;
  private cluster: ClusterMembership | undefined;
  /** The admin HTTP server (/healthz, /metrics, /messages/:id), when configured. */
  admin: AdminServer | undefined;
  private readonly server: ProtocolServer;
  private readonly cleanups: (() => void | Promise<void>)[] = [];
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: BrokerConfig,
    private readonly log: Logger,
    readonly pool: pg.Pool,
    readonly databaseUrl: string,
    private readonly publishPool: pg.Pool,
  ) {
    this.claimer = `${config.nodeId}/${Date.now().toString(36)}`;
    this.dispatcher = new Dispatcher({
      pool,
      nodeId: config.nodeId,
      claimer: this.claimer,
      log: log.child({ component: "delivery" }),
      deliveryTimeoutMs: config.deliverySeconds * 1000,
      leaseMs: config.leaseSeconds * 1000,
      pollMs: config.recoverSeconds * 1000,
      redelivery: config.redelivery,
      nonPersistentNeedsLocalConsumer: config.registry.kind === "static",
    });
    this.publisher = this.createPublisher();
    this.transactions = createTransactions({
      pool,
      config,
      nodeId: config.nodeId,
      claimer: this.claimer,
      dispatcher: this.dispatcher,
      log: log.child({ component: "tx" }),
    });
    this.server = new ProtocolServer(this.sessionHandler(), {
      idleTimeoutMs: config.idleTimeoutSeconds * 1000,
      logger: log,
    });
  }

  /** Start a node with `config`; resolves once it accepts connections. */
  static async start(config: BrokerConfig, log: Logger): Promise<Broker> {
    let embedded: EmbeddedPostgresServer | undefined;
    let url = config.databaseUrl;
    if (url === null) {
      embedded = await startEmbeddedPostgres({
        dataDir: path.join(config.dataDir, "pg"),
        port: config.pgPort,
        logger: log,
      });
      url = embedded.url("kiteq");
    }
    const pool = createPool(url, { max: 10, name: `kiteq-pg ${config.nodeId}` });
    // Publishes get connections of their own (one per concurrent batch) with generic plans: the
    // batch insert's plan never depends on its values, and planning it each time cost ~20%.
    const publishPool = createPool(url, {
      max: PUBLISH_CONCURRENCY,
      name: `kiteq-pg ${config.nodeId} publish`,
      settings: { plan_cache_mode: "force_generic_plan" },
    });
    const broker = new Broker(config, log, pool, url, publishPool);
    broker.cleanups.push(
      () => pool.end(),
      () => publishPool.end(),
    );
    if (embedded) broker.cleanups.push(() => embedded.stop());
    try {
      await broker.open();
    } catch (err) {
      // Tear down whatever started (listener, dispatcher, transactions, store).
      await broker.stop();
      throw err;
    }
    return broker;
  }

  private async open(): Promise<void> {
    const { config, pool, log } = this;
    await runMigrations(pool, log);
    const upkeep = async () => {
      await ensurePartitions(pool, new Date());
      if (config.retentionDays > 0) {
        const dropped = await dropPartitionsBefore(
          pool,
          new Date(Date.now() - config.retentionDays * 86_400_000),
        );
        if (dropped.length > 0) log.info({ dropped }, "retention: dropped history partitions");
      }
    };
    await upkeep();
    const partitionTimer = setInterval(() => {
      upkeep().catch((err: Error) =>
        log.error({ err: err.message, code: "KQ_STORE_FAILED" }, "partition upkeep failed"),
      );
    }, HOUR);
    partitionTimer.unref();
    this.cleanups.unshift(() => clearInterval(partitionTimer));
    const wake: WakeSource = await listenForWakeups(this.databaseUrl, log);
    wake.onBindingsChanged(() => void this.reloadBindings());
    await this.reloadBindings();
    await this.dispatcher.start(wake);
    await this.transactions.start();
    const address = await this.server.listen(config.bind.host, config.bind.port);
    Object.assign(this.address, address);
    await registerNode(pool, config.nodeId, `${address.host}:${address.port}`, new Date());
    const heartbeat = setInterval(() => {
      heartbeatNode(pool, config.nodeId, new Date()).catch((err: Error) =>
        log.warn({ err: err.message, code: "KQ_STORE_FAILED" }, "node heartbeat not written"),
      );
    }, 10_000);
    heartbeat.unref();
    this.cleanups.unshift(async () => {
      clearInterval(heartbeat);
      await markNodeStopped(pool, config.nodeId, new Date());
    });
    if (config.admin !== null) {
      const admin = await startAdminServer({
        host: config.admin.host,
        port: config.admin.port,
        token: config.adminToken,
        pool,
        log: log.child({ component: "admin" }),
        metrics: {
          publishCounters: () => this.publisher.counters,
          deliveryCounters: () => this.dispatcher.counters,
          batchStats: () => this.publisher.batchStats,
          sessionsConnected: () => this.server.sessions.size,
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
      log: log.child({ component: "registry" }),
    });
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

  /** Re-read the bindings table into the delivery engine. */
  async reloadBindings(): Promise<void> {
    try {
      this.dispatcher.setBindings(await listBindings(this.pool));
    } catch (err) {
      const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
      this.log.error(
        { code: e.code, err: e.message },
        "reloading bindings failed; keeping the previous ones",
      );
    }
  }

  /** Graceful stop: stop accepting, flush and ack pending publishes, release claims, close sessions, stop the store. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.log.info("broker stopping");
    const accepting = this.server.stopAccepting();
    await this.publisher.drain();
    // Release our claims first, then leave the registry: other nodes release what a departed
    // node held, which must not happen while this node is still pushing it.
    await this.transactions.stop();
    await this.dispatcher.stop();
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
    const { config, publishPool } = this;
    const topics = new Set(config.topics);
    const permits =
      config.receivePermitsPerSecond > 0
        ? TokenBucket.forReceivePermits(config.receivePermitsPerSecond)
        : undefined;
    const dispatcher = this.dispatcher;
    return new Publisher(
      {
        servesTopic: topics.size === 0 ? () => true : (t) => topics.has(t),
        admit: () => permits === undefined || permits.tryTake(1),
        planDeliveries: (h) => dispatcher.planDeliveries(h),
        deliverFly: (h, body, isString) => dispatcher.deliverFly(h, body, isString),
        afterWrite: (records, results) => dispatcher.afterWrite(records, results),
      },
      (records) => {
        const now = new Date();
        return insertPublishBatch(publishPool, records, {
          now,
          nodeId: config.nodeId,
          leaseUntil: new Date(now.getTime() + config.leaseSeconds * 1000),
          firstTxCheckAt: new Date(now.getTime() + config.txCheck.firstCheckSeconds * 1000),
        });
      },
      {
        maxBatch: config.batch.maxMessages,
        concurrency: PUBLISH_CONCURRENCY,
        windowMs: config.batch.windowMs,
      },
      this.log.child({ component: "publish" }),
    );
  }

  private sessionHandler(): SessionHandler {
    const secrets = this.config.secrets;
    return {
      authenticate(meta) {
        if (secrets.size === 0) return null;
        const expected = secrets.get(meta.groupId);
        if (expected === undefined) return `no secret configured for group "${meta.groupId}"`;
        return expected === meta.secretKey ? null : `wrong secret for group "${meta.groupId}"`;
      },
      onAuthenticated: (s) => {
        this.dispatcher.addSession(s);
        this.transactions.onSession(s);
        this.cluster?.onSession(s);
      },
      onPublish: (s, opaque, msg, isString) => this.publisher.publish(s, opaque, msg, isString),
      onDeliverAck: (s, opaque, ack) => this.dispatcher.onDeliverAck(s, opaque, ack),
      onTxAck: (s, opaque, tx) => this.transactions.onTxAck(s, opaque, tx),
      onClose: (s) => {
        this.dispatcher.removeSession(s);
        this.transactions.onSessionClosed(s);
      },
    };
  }
}
