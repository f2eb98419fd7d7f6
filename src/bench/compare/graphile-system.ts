/**
 * graphile-worker as a compare system: producers in the bench process through WorkerUtils.addJob
 * (one job each), the runner in a child process (peer-child.ts) with the settings of
 * https://worker.graphile.org/docs/performance (local queue, batched completion).
 */
import { Logger, makeWorkerUtils, type WorkerUtils } from "graphile-worker";
import type { BenchEnv } from "../environment.js";
import { PeerProcess } from "./peer-process.js";
import { peerPayload, type SeenCallback, type SystemOptions, type SystemUnderTest } from "./system.js";

const TASK = "bench";

/** Runner settings (graphile-worker 0.17). */
export interface GraphileSettings {
  concurrency: number;
  maxPoolSize: number;
  localQueueSize: number;
  completeJobBatchDelay: number;
  pollInterval: number;
}

/** graphile-worker (see module comment). */
export class GraphileSystem implements SystemUnderTest {
  readonly name = "graphile-worker";
  readonly database = "bench_graphile_worker";
  readonly rssOf = "runner child process";
  readonly settings: Record<string, string | number | boolean>;
  private utils: WorkerUtils | undefined;
  private child: PeerProcess | undefined;

  constructor(
    private readonly env: BenchEnv,
    private readonly o: SystemOptions,
    private readonly runner: GraphileSettings,
  ) {
    this.settings = {
      version: "0.17.3",
      producer: `WorkerUtils.addJob() per job, pool max ${o.peerProducerPool}`,
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
    this.utils = await makeWorkerUtils({
      connectionString: url,
      maxPoolSize: this.o.peerProducerPool,
      logger: new Logger(() => () => undefined),
    });
    await this.utils.migrate();
    this.child = await PeerProcess.spawn({
      system: "graphile-worker",
      url,
      queue: TASK,
      settings: { ...this.runner },
    });
  }

  async enqueue(seq: number, sentAt: number): Promise<void> {
    await this.utils!.addJob(TASK, peerPayload(seq, sentAt, this.o.bodySize));
  }

  startConsumer(onSeen: SeenCallback): Promise<void> {
    return this.child!.work(onSeen);
  }

  rssPid(): number {
    return this.child!.pid;
  }

  async teardown(): Promise<void> {
    const errors = this.child?.reportedErrors ?? [];
    if (errors.length > 0) console.error(`bench: graphile-worker runner reported: ${errors.join("; ")}`);
    await this.child?.stop().catch(() => this.child?.kill());
    this.child = undefined;
    await this.utils?.release();
    this.utils = undefined;
  }
}
