/**
 * One broker node: the store (embedded or external PostgreSQL), the protocol server, the
 * publish path and the delivery engine, started and stopped in order.
 */
import path from "node:path";
import type pg from "pg";
import type { BrokerConfig } from "../config/types.js";
import { TokenBucket } from "../delivery/token-bucket.js";
import type { Logger } from "../log.js";
import { Publisher } from "../publish/publisher.js";
import { createPool, ensurePartitions, runMigrations } from "../store/db.js";
import { type EmbeddedPostgresServer, startEmbeddedPostgres } from "../store/embedded.js";
import { insertPublishBatch } from "../store/messages.js";
import { ProtocolServer } from "./server.js";
import type { Session, SessionHandler } from "./session.js";

const HOUR = 3_600_000;

/** A running broker node. */
export class Broker {
  private stopping: Promise<void> | undefined;
  private partitionTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly config: BrokerConfig,
    readonly nodeId: string,
    readonly address: { host: string; port: number },
    private readonly log: Logger,
    readonly pool: pg.Pool,
    private readonly embedded: EmbeddedPostgresServer | undefined,
    private readonly server: ProtocolServer,
    readonly publisher: Publisher,
  ) {}

  /** Start a node with `config`; resolves once it accepts connections. */
  static async start(config: BrokerConfig, log: Logger): Promise<Broker> {
    let embedded: EmbeddedPostgresServer | undefined;
    let url = config.databaseUrl;
    if (url === null) {
      embedded = await startEmbeddedPostgres({ dataDir: path.join(config.dataDir, "pg"), logger: log });
      url = embedded.url("kiteq");
    }
    const pool = createPool(url, { max: 10, name: `kiteq-pg ${config.nodeId}` });
    try {
      await runMigrations(pool, log);
      await ensurePartitions(pool, new Date());
    } catch (err) {
      await pool.end();
      await embedded?.stop();
      throw err;
    }
    const topics = new Set(config.topics);
    const servesTopic = topics.size === 0 ? () => true : (t: string) => topics.has(t);
    const permits =
      config.receivePermitsPerSecond > 0
        ? new TokenBucket(config.receivePermitsPerSecond, config.receivePermitsPerSecond)
        : undefined;
    const nodeId = config.nodeId;
    const publisher = new Publisher(
      {
        servesTopic,
        admit: () => permits === undefined || permits.tryTake(1),
        planDeliveries: () => [],
        deliverFly: () => undefined,
        afterCommit: () => undefined,
      },
      (records) => {
        const now = new Date();
        return insertPublishBatch(pool, records, {
          now,
          nodeId,
          leaseUntil: new Date(now.getTime() + config.leaseSeconds * 1000),
          firstTxCheckAt: new Date(now.getTime() + config.txCheck.firstCheckSeconds * 1000),
        });
      },
      { maxBatch: config.batch.maxMessages, concurrency: 2 },
      log.child({ component: "publish" }),
    );
    const secrets = config.secrets;
    const handler: SessionHandler = {
      authenticate(meta) {
        if (secrets.size === 0) return null;
        const expected = secrets.get(meta.groupId);
        if (expected === undefined) return `no secret configured for group "${meta.groupId}"`;
        return expected === meta.secretKey ? null : `wrong secret for group "${meta.groupId}"`;
      },
      onAuthenticated: () => undefined,
      onPublish: (s: Session, opaque, msg, isString) => publisher.publish(s, opaque, msg, isString),
      onDeliverAck: () => undefined,
      onTxAck: () => undefined,
      onClose: () => undefined,
    };
    const server = new ProtocolServer(handler, {
      idleTimeoutMs: config.idleTimeoutSeconds * 1000,
      logger: log,
    });
    let address: { host: string; port: number };
    try {
      address = await server.listen(config.bind.host, config.bind.port);
    } catch (err) {
      await pool.end();
      await embedded?.stop();
      throw err;
    }
    const broker = new Broker(config, nodeId, address, log, pool, embedded, server, publisher);
    broker.partitionTimer = setInterval(() => {
      ensurePartitions(pool, new Date()).catch((err: Error) =>
        log.error({ err: err.message, code: "KQ_STORE_FAILED" }, "partition upkeep failed"),
      );
    }, HOUR);
    broker.partitionTimer.unref();
    log.info(
      { address: `${address.host}:${address.port}`, nodeId, embedded: embedded !== undefined },
      "broker started",
    );
    return broker;
  }

  /** Graceful stop: stop accepting, flush and ack pending publishes, close sessions, stop the store. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.log.info("broker stopping");
    clearInterval(this.partitionTimer);
    const accepting = this.server.stopAccepting();
    await this.publisher.drain();
    this.server.closeSessions();
    await accepting;
    await this.pool.end();
    await this.embedded?.stop();
    this.log.info("broker stopped");
  }
}
