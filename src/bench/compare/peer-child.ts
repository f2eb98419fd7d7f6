/**
 * Child process running a peer's consumer (pg-boss or graphile-worker) for the compare suite, so
 * its peak RSS is its own. Config comes in BENCH_PEER_CONFIG (JSON); the parent says "work" and
 * "stop" over IPC; handler calls go back in batches every 20 ms as {seq, sentAt, seenAt} columns.
 */
import { Logger, run } from "graphile-worker";
import PgBoss from "pg-boss";
import { nowMs } from "../stats.js";
import type { PeerPayload } from "./system.js";

/** What the parent passes in BENCH_PEER_CONFIG. */
export interface PeerChildConfig {
  system: "pg-boss" | "graphile-worker";
  url: string;
  queue: string;
  settings: Record<string, number>;
}

/** Messages between parent and child. */
export type ToChild = { type: "work" } | { type: "stop" };
export type FromChild =
  | { type: "ready" }
  | { type: "working" }
  | { type: "seen"; s: number[]; t: number[]; at: number[] }
  | { type: "stopped" }
  | { type: "error"; message: string };

interface Consumer {
  start(): Promise<void>;
  stop(): Promise<void>;
}

type OnJob = (payload: PeerPayload) => void;

function send(m: FromChild): void {
  process.send?.(m);
}

/** pg-boss: `workers` polling workers fetching `batchSize` jobs; a full batch polls again at once. */
async function pgBossConsumer(c: PeerChildConfig, onJob: OnJob): Promise<Consumer> {
  const s = c.settings;
  const boss = new PgBoss({ connectionString: c.url, max: s.poolSize, schedule: false, migrate: false });
  boss.on("error", (err) => send({ type: "error", message: `pg-boss: ${err.message}` }));
  await boss.start();
  const batchSize = s.batchSize!;
  return {
    async start() {
      for (let w = 0; w < s.workers!; w++) {
        let id: string | undefined;
        id = await boss.work<PeerPayload>(
          c.queue,
          { batchSize, pollingIntervalSeconds: s.pollingIntervalSeconds! },
          async (jobs) => {
            for (const j of jobs) onJob(j.data);
            // notifyWorker bypasses the polling interval for the next fetch (documented API).
            if (jobs.length === batchSize && id !== undefined) boss.notifyWorker(id);
          },
        );
      }
    },
    async stop() {
      await boss.stop({ graceful: true, wait: true, timeout: 10_000 });
    },
  };
}

/** graphile-worker: run() with the settings of its performance page (local queue, batched completion). */
async function graphileConsumer(c: PeerChildConfig, onJob: OnJob): Promise<Consumer> {
  const s = c.settings;
  let runner: Awaited<ReturnType<typeof run>> | undefined;
  return {
    async start() {
      runner = await run({
        connectionString: c.url,
        concurrency: s.concurrency!,
        maxPoolSize: s.maxPoolSize!,
        pollInterval: s.pollInterval!,
        noHandleSignals: true,
        logger: new Logger(() => () => undefined),
        taskList: {
          [c.queue]: async (payload) => {
            onJob(payload as PeerPayload);
          },
        },
        preset: {
          worker: {
            localQueue: { size: s.localQueueSize! },
            completeJobBatchDelay: s.completeJobBatchDelay!,
            failJobBatchDelay: s.completeJobBatchDelay!,
          },
        },
      });
    },
    async stop() {
      await runner?.stop();
    },
  };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.BENCH_PEER_CONFIG ?? "{}") as PeerChildConfig;
  let cols = { s: [] as number[], t: [] as number[], at: [] as number[] };
  const flush = () => {
    if (cols.s.length === 0) return;
    send({ type: "seen", ...cols });
    cols = { s: [], t: [], at: [] };
  };
  const flusher = setInterval(flush, 20);
  const onJob: OnJob = (p) => {
    cols.at.push(nowMs());
    cols.s.push(p.s);
    cols.t.push(p.t);
  };
  const consumer =
    config.system === "pg-boss" ? await pgBossConsumer(config, onJob) : await graphileConsumer(config, onJob);
  process.on("message", (m: ToChild) => {
    if (m.type === "work") {
      consumer.start().then(
        () => send({ type: "working" }),
        (err: Error) => send({ type: "error", message: err.message }),
      );
    } else if (m.type === "stop") {
      consumer
        .stop()
        .catch((err: Error) => send({ type: "error", message: `stop: ${err.message}` }))
        .finally(() => {
          clearInterval(flusher);
          flush();
          send({ type: "stopped" });
          process.disconnect?.();
          setTimeout(() => process.exit(0), 100).unref();
        });
    }
  });
  // The parent went away: nothing left to report to.
  process.on("disconnect", () => setTimeout(() => process.exit(0), 200).unref());
  send({ type: "ready" });
}

main().catch((err: unknown) => {
  send({ type: "error", message: err instanceof Error ? err.message : String(err) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
