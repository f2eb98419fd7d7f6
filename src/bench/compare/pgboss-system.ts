/**
 * pg-boss as a compare system: producers in the bench process through `send()` (one job each, as
 * kiteq-pg publishes one message each), the consumer in a child process (peer-child.ts).
 */
import PgBoss from "pg-boss";
import type { BenchEnv } from "../environment.js";
import { PeerProcess } from "./peer-process.js";
import { peerPayload, type SeenCallback, type SystemOptions, type SystemUnderTest } from "./system.js";

const QUEUE = "bench";

/** Consumer settings; see the README of pg-boss 10 (work(): batchSize, polling, notifyWorker). */
export interface PgBossSettings {
  workers: number;
  batchSize: number;
  pollingIntervalSeconds: number;
  poolSize: number;
}

/** pg-boss (see module comment). */
export class PgBossSystem implements SystemUnderTest {
  readonly name = "pg-boss";
  readonly database = "bench_pg_boss";
  readonly rssOf = "consumer child process";
  readonly settings: Record<string, string | number | boolean>;
  private producer: PgBoss | undefined;
  private child: PeerProcess | undefined;
  private url = "";

  constructor(
    private readonly env: BenchEnv,
    private readonly o: SystemOptions,
    private readonly consumer: PgBossSettings,
  ) {
    this.settings = {
      version: "10.4.2",
      queuePolicy: "standard",
      producer: `send() per job, pool max ${o.peerProducerPool}`,
      consumerWorkers: consumer.workers,
      batchSize: consumer.batchSize,
      pollingIntervalSeconds: consumer.pollingIntervalSeconds,
      consumerPool: consumer.poolSize,
      drain: "notifyWorker(id) after a full batch (skip the polling wait while jobs remain)",
      supervise: "default (maintenance on)",
    };
  }

  async setup(): Promise<void> {
    this.url = await this.env.freshDatabase(this.database);
    const boss = new PgBoss({
      connectionString: this.url,
      max: this.o.peerProducerPool,
      supervise: false,
      schedule: false,
      migrate: true,
    });
    boss.on("error", (err) => console.error(`bench: pg-boss producer: ${err.message}`));
    await boss.start();
    this.producer = boss;
    await boss.createQueue(QUEUE, { name: QUEUE, policy: "standard" });
    this.child = await PeerProcess.spawn({
      system: "pg-boss",
      url: this.url,
      queue: QUEUE,
      settings: { ...this.consumer },
    });
  }

  async enqueue(seq: number, sentAt: number): Promise<void> {
    const id = await this.producer!.send(QUEUE, peerPayload(seq, sentAt, this.o.bodySize));
    if (id === null) throw new Error("pg-boss send returned no id");
  }

  startConsumer(onSeen: SeenCallback): Promise<void> {
    return this.child!.work(onSeen);
  }

  rssPid(): number {
    return this.child!.pid;
  }

  async teardown(): Promise<void> {
    const errors = this.child?.reportedErrors ?? [];
    if (errors.length > 0) console.error(`bench: pg-boss consumer reported: ${errors.join("; ")}`);
    await this.child?.stop().catch(() => this.child?.kill());
    this.child = undefined;
    await this.producer?.stop({ graceful: false, wait: true, timeout: 5000 });
    this.producer = undefined;
  }
}
