/**
 * `bench compare` (issue 7): kiteq-pg, pg-boss and graphile-worker on one embedded PostgreSQL
 * (fsync on, same settings for all), each on a fresh database, running the same three workloads
 * (compare/phases.ts). Prints tables with each peer's ratio to kiteq-pg, writes JSON and an SVG
 * chart under bench-results/, and exits non-zero when a system lost or duplicated a message.
 */
import path from "node:path";
import { GraphileSystem } from "./compare/graphile-system.js";
import { KiteqSystem } from "./compare/kiteq-system.js";
import { PgBossSystem } from "./compare/pgboss-system.js";
import { runPhases, type SystemResult } from "./compare/phases.js";
import { chartOf, printCompare, ratiosToBaseline } from "./compare/report.js";
import type { SystemOptions, SystemUnderTest } from "./compare/system.js";
import { type BenchEnv, withEnv } from "./environment.js";
import { parseSuiteFlags, UsageError } from "./flags.js";
import { machineInfo, Progress, resultPath, timestamp, writeResult } from "./output.js";
import { peakRssKb } from "./stats.js";
import { COMMON_FLAGS, type Suite } from "./suite.js";

const ALL_SYSTEMS = ["kiteq-pg", "pg-boss", "graphile-worker"] as const;

const FLAGS = {
  systems: { default: ALL_SYSTEMS.join(","), help: "systems to run, in order" },
  messages: { default: 20_000, help: "burn-down: messages enqueued before the consumer starts" },
  rate: { default: 1000, help: "steady: offered messages per second" },
  "steady-seconds": { default: 10, help: "steady: seconds of offered load" },
  "flat-seconds": { default: 10, help: "flat out: seconds of producing" },
  "warmup-seconds": { default: 1, help: "steady and flat out: first seconds left out of the figures" },
  connections: { default: 4, help: "kiteq-pg: producer connections" },
  "peer-pool": { default: 10, help: "pg-boss, graphile-worker: producer pool size (their default)" },
  window: { default: 16, help: "enqueues in flight per connection; connections x window for every system" },
  "drain-seconds": { default: 120, help: "longest wait for the consumer to catch up after a phase" },
  "pgboss-workers": { default: 4, help: "pg-boss: work() workers in the consumer" },
  "pgboss-batch": { default: 100, help: "pg-boss: batchSize of each worker" },
  "pgboss-pool": { default: 10, help: "pg-boss: consumer pool size" },
  "graphile-concurrency": { default: 24, help: "graphile-worker: concurrency (concurrentJobs)" },
  "graphile-pool": { default: 25, help: "graphile-worker: maxPoolSize" },
  "graphile-local-queue": { default: 500, help: "graphile-worker: localQueue.size" },
  "graphile-complete-delay": {
    default: 0,
    help: "graphile-worker: completeJobBatchDelay / failJobBatchDelay ms",
  },
  ...COMMON_FLAGS,
} as const;

type CompareFlags = ReturnType<typeof parseSuiteFlags<typeof FLAGS>>;

function makeSystem(name: string, env: BenchEnv, f: CompareFlags): SystemUnderTest {
  const o: SystemOptions = {
    producerConnections: f.connections,
    peerProducerPool: f["peer-pool"],
    bodySize: f["body-size"],
  };
  switch (name) {
    case "kiteq-pg":
      return new KiteqSystem(env, o);
    case "pg-boss":
      return new PgBossSystem(env, o, {
        workers: f["pgboss-workers"],
        batchSize: f["pgboss-batch"],
        pollingIntervalSeconds: 0.5,
        poolSize: f["pgboss-pool"],
      });
    case "graphile-worker":
      return new GraphileSystem(env, o, {
        concurrency: f["graphile-concurrency"],
        maxPoolSize: f["graphile-pool"],
        localQueueSize: f["graphile-local-queue"],
        completeJobBatchDelay: f["graphile-complete-delay"],
        pollInterval: 2000,
      });
    default:
      throw new UsageError(`--systems: unknown system "${name}" (known: ${ALL_SYSTEMS.join(", ")})`);
  }
}

export const comparePeersSuite: Suite = {
  name: "compare",
  summary: "kiteq-pg vs pg-boss vs graphile-worker: burn-down, steady rate, flat out (issue 7)",
  flags: FLAGS,
  async run(argv) {
    const f = parseSuiteFlags(argv, FLAGS);
    const names = f.systems
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    for (const n of names) {
      if (!(ALL_SYSTEMS as readonly string[]).includes(n)) {
        throw new UsageError(`--systems: unknown system "${n}" (known: ${ALL_SYSTEMS.join(", ")})`);
      }
    }
    if (f.messages < 1 || f.rate <= 0 || f["steady-seconds"] <= 0 || f["flat-seconds"] <= 0) {
      throw new UsageError("--messages, --rate, --steady-seconds and --flat-seconds must be > 0");
    }
    const progress = new Progress();
    return withEnv("compare", async (env) => {
      const results: SystemResult[] = [];
      for (const name of names) {
        results.push(
          await runPhases(
            makeSystem(name, env, f),
            env,
            {
              messages: f.messages,
              rate: f.rate,
              steadySeconds: f["steady-seconds"],
              flatSeconds: f["flat-seconds"],
              warmupSeconds: f["warmup-seconds"],
              loops: f.connections * f.window,
              drainSeconds: f["drain-seconds"],
            },
            progress,
          ),
        );
      }
      progress.end();
      const ratios = ratiosToBaseline(results);
      printCompare(results, ratios, f.rate);
      const machine = await machineInfo();
      const stamp = timestamp();
      const subtitle =
        `${new Date().toISOString().slice(0, 16)}Z, ${machine.cpus} CPU, PostgreSQL fsync on; burn-down ${f.messages}, ` +
        `steady ${f.rate}/s x ${f["steady-seconds"]}s, flat out ${f["flat-seconds"]}s, ` +
        `${f.connections}x${f.window} in flight, body ${f["body-size"]} B`;
      const json = await writeResult(
        resultPath(f.out, "compare", stamp, "json"),
        `${JSON.stringify(
          {
            suite: "compare",
            at: new Date().toISOString(),
            machine,
            postgres: await env.describeSettings(),
            flags: f,
            results,
            ratiosToKiteqPg: ratios,
            benchProcessPeakRssKb: peakRssKb(process.pid) ?? null,
          },
          null,
          2,
        )}\n`,
      );
      const svg = await writeResult(resultPath(f.out, "compare", stamp, "svg"), chartOf(results, subtitle));
      console.log(
        `\nresults: ${path.relative(process.cwd(), json)}\nchart:   ${path.relative(process.cwd(), svg)}`,
      );
      const failed = results.filter((r) => r.failures.length > 0);
      for (const r of failed) for (const x of r.failures) console.error(`FAILURE: ${r.name}: ${x}`);
      return failed.length > 0 ? 1 : 0;
    });
  },
};
