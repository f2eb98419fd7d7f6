/**
 * graphile-worker as a compare system: producers in the bench process through WorkerUtils.addJob
 * (one job each) and addJobs (its bulk API, for the burn-down fill), the runner in a child process
 * (consumer-child.ts) with the settings of https://worker.graphile.org/docs/performance (local
 * queue, batched completion). It deletes a job once it completed.
 */
import { Logger, makeWorkerUtils, type WorkerUtils } from "graphile-worker";
import pg from "pg";
import type { BenchEnv } from "../environment.js";
import type { GraphileSettings } from "./consumer-child.js";
import { ConsumerProcess } from "./consumer-process.js";
import {
  type MeasuredProcess,
  peerPayload,
  type SeenCallback,
  type SystemOptions,
  type SystemUnderTest,
} from "./system.js";
import { installedPackage, versionLabel } from "./versions.js";

const TASK = "bench";

/** graphile-worker (see module comment). */
export class GraphileSystem implements SystemUnderTest {
  readonly name = "graphile-worker";
  readonly version = versionLabel(installedPackage("graphile-worker"));
  readonly caps: string;
  readonly retention = "completed jobs deleted at once (pending jobs only)";
  readonly fillMethod = "addJobs() batches (its bulk API)";
  readonly rssOf = "runner process";
  readonly database = "bench_graphile_worker";
  readonly settings: Record<string, string | number | boolean>;
  private utils: WorkerUtils | undefined;
  private pool: pg.Pool | undefined;
  private child: ConsumerProcess | undefined;

  constructor(
    private readonly env: BenchEnv,
    private readonly o: SystemOptions,
    private readonly runner: GraphileSettings,
  ) {
    this.caps =
      `every enqueue sends a NOTIFY that wakes the runner (built in); concurrency ${runner.concurrency}, ` +
      `local queue ${runner.localQueueSize}, runner pool ${runner.maxPoolSize}; producer pool ${o.peerProducerPool}`;
    this.settings = {
      producer: `WorkerUtils.addJob() per job, addJobs() for the burn-down fill, pool max ${o.peerProducerPool}`,
      concurrency: runner.concurrency,
      maxPoolSize: runner.maxPoolSize,
      localQueueSize: runner.localQueueSize,
      completeJobBatchDelay: runner.completeJobBatchDelay,
      failJobBatchDelay: runner.completeJobBatchDelay,
      pollInterval: runner.pollInterval,
      wakeups: "LISTEN/NOTIFY (built in)",
    };
  }

  async setup(): Promise<void> {
    const url = await this.env.freshDatabase(this.database);
    // Our own pool, ended (and awaited) in teardown: WorkerUtils.release() ends a pool it made
    // without waiting, after removing its error handlers, so stopping PostgreSQL right after could
    // crash the bench with an unhandled "terminating connection" error.
    const pool = new pg.Pool({ connectionString: url, max: this.o.peerProducerPool });
    const onError = (err: Error) => console.error(`bench: graphile-worker producer pool: ${err.message}`);
    pool.on("error", onError);
    pool.on("connect", (client) => client.on("error", onError));
    this.pool = pool;
    this.utils = await makeWorkerUtils({ pgPool: pool, logger: new Logger(() => () => undefined) });
    await this.utils.migrate();
    this.child = await ConsumerProcess.spawn({
      system: "graphile-worker",
      url,
      task: TASK,
      settings: this.runner,
    });
  }

  async enqueue(_producer: number, seq: number, sentAt: number): Promise<void> {
    await this.utils!.addJob(TASK, peerPayload(seq, sentAt, this.o.bodySize));
  }

  async enqueueBatch(seqs: readonly number[], sentAt: number): Promise<void> {
    const jobs = await this.utils!.addJobs(
      seqs.map((s) => ({ identifier: TASK, payload: peerPayload(s, sentAt, this.o.bodySize) })),
    );
    if (jobs.length !== seqs.length) {
      throw new Error(`graphile-worker addJobs stored ${jobs.length} of ${seqs.length} jobs`);
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
    if (errors.length > 0) console.error(`bench: graphile-worker runner reported: ${errors.join("; ")}`);
    await this.child?.stop().catch(() => this.child?.kill());
    this.child = undefined;
    await this.utils?.release();
    this.utils = undefined;
    await this.pool?.end();
    this.pool = undefined;
  }
}
