/**
 * Child process running one system's consumer for the compare suite (kiteq-pg's SDK consumer,
 * pg-boss work() or graphile-worker run()), so every system's consumer lives in a process of its
 * own and its peak RSS is measured alike. Config comes in BENCH_CONSUMER_CONFIG (JSON); the parent
 * says "work", "pause" (stop consuming, process and connections of the instance kept, so "work"
 * again starts warm) and "stop" over IPC; handler calls go back in batches every 20 ms as
 * {seq, sentAt, seenAt} columns (seenAt taken in the handler, on the clock all processes share).
 */
import { Logger, run } from "graphile-worker";
import { PgBoss } from "pg-boss";
import { benchConsumer } from "../kiteq-load.js";
import { nowMs } from "../stats.js";
import type { PeerPayload } from "./system.js";

/** pg-boss consumer settings (pg-boss 12 work() options). */
export interface PgBossConsumerSettings {
  /** work() localConcurrency: workers polling independently. */
  workers: number;
  batchSize: number;
  pollingIntervalSeconds: number;
  poolSize: number;
  /** useListenNotify on the instance (the queue is created with notify: true to match). */
  listenNotify: boolean;
}

/** graphile-worker runner settings. */
export interface GraphileSettings {
  concurrency: number;
  maxPoolSize: number;
  localQueueSize: number;
  completeJobBatchDelay: number;
  pollInterval: number;
}

/** What the parent passes in BENCH_CONSUMER_CONFIG. */
export type ConsumerChildConfig =
  | { system: "kiteq-pg"; port: number; group: string }
  | { system: "pg-boss"; url: string; queue: string; settings: PgBossConsumerSettings }
  | { system: "graphile-worker"; url: string; task: string; settings: GraphileSettings };

/** Messages between parent and child. */
export type ToChild = { type: "work" } | { type: "pause" } | { type: "stop" };
export type FromChild =
  | { type: "ready" }
  | { type: "working" }
  | { type: "paused" }
  | { type: "seen"; s: number[]; t: number[]; at: number[] }
  | { type: "stopped" }
  | { type: "error"; message: string };

interface Consumer {
  start(): Promise<void>;
  /** Stop consuming, gracefully (handlers done, their completions written); start() resumes. */
  pause(): Promise<void>;
  stop(): Promise<void>;
}

type OnSeen = (seq: number, sentAt: number, seenAt: number) => void;

function send(m: FromChild): void {
  process.send?.(m);
}

/** kiteq-pg: one SDK consumer connection of the bound group, acking true at once. */
function kiteqConsumer(c: Extract<ConsumerChildConfig, { system: "kiteq-pg" }>, onSeen: OnSeen): Consumer {
  let conn: Awaited<ReturnType<typeof benchConsumer>> | undefined;
  return {
    async start() {
      conn = await benchConsumer(c.port, c.group, onSeen);
    },
    async pause() {
      conn?.close();
      conn = undefined;
    },
    async stop() {
      conn?.close();
    },
  };
}

/** pg-boss: `workers` workers fetching `batchSize` jobs; a full batch fetches again at once. */
async function pgBossConsumer(
  c: Extract<ConsumerChildConfig, { system: "pg-boss" }>,
  onSeen: OnSeen,
): Promise<Consumer> {
  const s = c.settings;
  const boss = new PgBoss({
    connectionString: c.url,
    max: s.poolSize,
    schedule: false,
    migrate: false,
    useListenNotify: s.listenNotify,
  });
  boss.on("error", (err: Error) => send({ type: "error", message: `pg-boss: ${err.message}` }));
  await boss.start();
  return {
    async start() {
      await boss.work<PeerPayload>(
        c.queue,
        {
          localConcurrency: s.workers,
          batchSize: s.batchSize,
          pollingIntervalSeconds: s.pollingIntervalSeconds,
          // While fetches come back full, fetch again without waiting (pg-boss 12's documented
          // replacement for calling notifyWorker() after a full batch).
          burstWhenBatchFull: true,
        },
        async (jobs) => {
          const at = nowMs();
          for (const j of jobs) onSeen(j.data.s, j.data.t, at);
        },
      );
    },
    async pause() {
      await boss.offWork(c.queue, { wait: true });
    },
    async stop() {
      await boss.stop({ graceful: true, timeout: 10_000 });
    },
  };
}

/** graphile-worker: run() with the settings of its performance page (local queue, batched completion). */
function graphileConsumer(
  c: Extract<ConsumerChildConfig, { system: "graphile-worker" }>,
  onSeen: OnSeen,
): Consumer {
  const s = c.settings;
  let runner: Awaited<ReturnType<typeof run>> | undefined;
  return {
    async start() {
      runner = await run({
        connectionString: c.url,
        concurrency: s.concurrency,
        maxPoolSize: s.maxPoolSize,
        pollInterval: s.pollInterval,
        noHandleSignals: true,
        logger: new Logger(() => () => undefined),
        taskList: {
          [c.task]: async (payload) => {
            const p = payload as PeerPayload;
            onSeen(p.s, p.t, nowMs());
          },
        },
        preset: {
          worker: {
            localQueue: { size: s.localQueueSize },
            completeJobBatchDelay: s.completeJobBatchDelay,
            failJobBatchDelay: s.completeJobBatchDelay,
          },
        },
      });
    },
    async pause() {
      await runner?.stop();
      runner = undefined;
    },
    async stop() {
      await runner?.stop();
    },
  };
}

async function consumerFor(c: ConsumerChildConfig, onSeen: OnSeen): Promise<Consumer> {
  switch (c.system) {
    case "kiteq-pg":
      return kiteqConsumer(c, onSeen);
    case "pg-boss":
      return pgBossConsumer(c, onSeen);
    case "graphile-worker":
      return graphileConsumer(c, onSeen);
  }
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.BENCH_CONSUMER_CONFIG ?? "{}") as ConsumerChildConfig;
  let cols = { s: [] as number[], t: [] as number[], at: [] as number[] };
  const flush = () => {
    if (cols.s.length === 0) return;
    send({ type: "seen", ...cols });
    cols = { s: [], t: [], at: [] };
  };
  const flusher = setInterval(flush, 20);
  const onSeen: OnSeen = (seq, sentAt, seenAt) => {
    cols.s.push(seq);
    cols.t.push(sentAt);
    cols.at.push(seenAt);
  };
  const consumer = await consumerFor(config, onSeen);
  process.on("message", (m: ToChild) => {
    if (m.type === "work") {
      consumer.start().then(
        () => send({ type: "working" }),
        (err: Error) => {
          // Exiting fails the parent's wait for "working" with this message.
          send({ type: "error", message: `start: ${err.message}` });
          setTimeout(() => process.exit(1), 100).unref();
        },
      );
    } else if (m.type === "pause") {
      consumer.pause().then(
        () => {
          flush();
          send({ type: "paused" });
        },
        (err: Error) => send({ type: "error", message: `pause: ${err.message}` }),
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
