/**
 * pg-boss as a compare system: producers in the bench process through `send()` (one job each, as
 * kiteq-pg publishes one message each) and `insert()` (its batch API, for the burn-down fill), the
 * consumer in a child process (consumer-child.ts). Two rows: woken by LISTEN/NOTIFY (pg-boss 11+:
 * the instance's `useListenNotify` and the queue's `notify`), and polling every 0.5 s (its minimum).
 */
import { PgBoss } from "pg-boss";
import type { BenchEnv } from "../environment.js";
import type { PgBossConsumerSettings } from "./consumer-child.js";
import { ConsumerProcess } from "./consumer-process.js";
import {
  type MeasuredProcess,
  peerPayload,
  type SeenCallback,
  type SystemOptions,
  type SystemUnderTest,
} from "./system.js";
import { installedPackage, versionLabel } from "./versions.js";

const QUEUE = "bench";

/** Consumer settings shared by both rows (workers, batch size, pool, polling interval). */
export type PgBossSettings = Omit<PgBossConsumerSettings, "listenNotify">;

/** pg-boss (see module comment); `listenNotify` picks the row. */
export class PgBossSystem implements SystemUnderTest {
  readonly name: string;
  readonly version = versionLabel(installedPackage("pg-boss"));
  readonly caps: string;
  readonly retention = "completed jobs kept (deleteAfterSeconds default: 7 days)";
  readonly fillMethod = "insert() batches (its batch API)";
  readonly rssOf = "consumer process";
  readonly database: string;
  readonly settings: Record<string, string | number | boolean>;
  private producer: PgBoss | undefined;
  private child: ConsumerProcess | undefined;
  private readonly consumer: PgBossConsumerSettings;

  constructor(
    private readonly env: BenchEnv,
    private readonly o: SystemOptions,
    consumer: PgBossSettings,
    listenNotify: boolean,
  ) {
    this.consumer = { ...consumer, listenNotify };
    this.name = listenNotify ? "pg-boss (NOTIFY)" : `pg-boss (poll ${consumer.pollingIntervalSeconds} s)`;
    this.database = listenNotify ? "bench_pg_boss_notify" : "bench_pg_boss_poll";
    const wake = listenNotify
      ? "every enqueue sends a NOTIFY that wakes the workers (polling as backstop)"
      : `no NOTIFY, workers poll every ${consumer.pollingIntervalSeconds} s`;
    this.caps =
      `${wake}; ${consumer.workers} workers x batch ${consumer.batchSize}, ` +
      `consumer pool ${consumer.poolSize}; producer pool ${o.peerProducerPool}`;
    this.settings = {
      queuePolicy: "standard",
      queueNotify: listenNotify,
      useListenNotify: listenNotify,
      producer: `send() per job, insert() for the burn-down fill, pool max ${o.peerProducerPool}`,
      localConcurrency: consumer.workers,
      batchSize: consumer.batchSize,
      pollingIntervalSeconds: consumer.pollingIntervalSeconds,
      notifyPollingIntervalSeconds: listenNotify ? "default (30)" : "n/a",
      burstWhenBatchFull: true,
      consumerPool: consumer.poolSize,
      supervise: "consumer: default (maintenance on); producer: off",
    };
  }

  async setup(): Promise<void> {
    const url = await this.env.freshDatabase(this.database);
    const boss = new PgBoss({
      connectionString: url,
      max: this.o.peerProducerPool,
      supervise: false,
      schedule: false,
      migrate: true,
    });
    boss.on("error", (err: Error) => console.error(`bench: pg-boss producer: ${err.message}`));
    await boss.start();
    this.producer = boss;
    await boss.createQueue(QUEUE, { policy: "standard", notify: this.consumer.listenNotify });
    this.child = await ConsumerProcess.spawn({
      system: "pg-boss",
      url,
      queue: QUEUE,
      settings: this.consumer,
    });
  }

  async enqueue(_producer: number, seq: number, sentAt: number): Promise<void> {
    const id = await this.producer!.send(QUEUE, peerPayload(seq, sentAt, this.o.bodySize));
    if (id === null) throw new Error("pg-boss send returned no id");
  }

  async enqueueBatch(seqs: readonly number[], sentAt: number): Promise<void> {
    const ids = await this.producer!.insert(
      QUEUE,
      seqs.map((s) => ({ data: peerPayload(s, sentAt, this.o.bodySize) })),
    );
    if (ids !== null && ids.length !== seqs.length) {
      throw new Error(`pg-boss insert stored ${ids.length} of ${seqs.length} jobs`);
    }
  }

  startConsumer(onSeen: SeenCallback): Promise<void> {
    return this.child!.work(onSeen);
  }

  async pauseConsumer(): Promise<void> {
    await this.child?.pause();
  }

  async stopConsumer(): Promise<void> {
    await this.child?.stop();
  }

  measuredProcesses(): MeasuredProcess[] {
    return this.child ? [{ role: "consumer", pid: this.child.pid }] : [];
  }

  async teardown(): Promise<void> {
    const errors = this.child?.reportedErrors ?? [];
    if (errors.length > 0) console.error(`bench: ${this.name} consumer reported: ${errors.join("; ")}`);
    await this.child?.stop().catch(() => this.child?.kill());
    this.child = undefined;
    await this.producer?.stop({ graceful: false, timeout: 5000 });
    this.producer = undefined;
  }
}
