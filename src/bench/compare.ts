/**
 * `bench compare` (issue 7): kiteq-pg, pg-boss and graphile-worker on one embedded PostgreSQL
 * (fsync on, same settings for all), each row on a fresh database, running the same workloads
 * (compare/phases.ts). Rows: kiteq-pg with KiteQ's defaults (6,000/s watermark cap per group),
 * kiteq-pg uncapped, pg-boss woken by NOTIFY and polling, graphile-worker; the peers' releases are
 * read from their installed package.json. Prints tables with every cap stated and kiteq-pg's
 * advantage over each peer, writes JSON and an SVG chart under bench-results/, and exits non-zero
 * when a row lost or duplicated a message in any phase. With --rounds N every row runs N times,
 * the rows interleaved (each round in the other order than the one before), and the acceptance
 * checks take each value's median over the rounds.
 */
import path from "node:path";
import { ACK_WINDOW_MS } from "../delivery/outcomes.js";
import { type DbOnlyAwaited, type DbOnlyBurnDown, dbOnlyAwaited, dbOnlyBurnDown } from "./compare/db-only.js";
import { GraphileSystem } from "./compare/graphile-system.js";
import { KITEQ_DEFAULTS, KITEQ_UNCAPPED, KiteqSystem } from "./compare/kiteq-system.js";
import { type PgBossSettings, PgBossSystem } from "./compare/pgboss-system.js";
import { type PhaseOptions, runPhases, type SystemResult } from "./compare/phases.js";
import { acceptanceChecks, acceptanceOverRounds, advantageTables } from "./compare/ratios.js";
import { chartOf, type PhaseLabels, printCompare, printRounds } from "./compare/report.js";
import type { SystemOptions, SystemUnderTest } from "./compare/system.js";
import { enginesCaveat, installedPackage } from "./compare/versions.js";
import { type BenchEnv, withEnv } from "./environment.js";
import { parseSuiteFlags, UsageError } from "./flags.js";
import { fmt, machineInfo, Progress, resultPath, timestamp, writeResult } from "./output.js";
import { peakRssKb } from "./stats.js";
import { COMMON_FLAGS, type Suite } from "./suite.js";

/** Row keys for --systems, in the default order. */
const ALL_SYSTEMS = [
  "kiteq-pg-uncapped",
  "kiteq-pg",
  "pg-boss-notify",
  "pg-boss-poll",
  "graphile-worker",
] as const;

/** The peer packages whose release and engines range are reported. */
const PEER_PACKAGES = ["pg-boss", "graphile-worker"] as const;

const FLAGS = {
  systems: { default: ALL_SYSTEMS.join(","), help: "rows to run, in order" },
  "warmup-messages": {
    default: 20_000,
    help: "warm-up: an untimed burn-down of this many messages before the measured one (0: none, it runs cold)",
  },
  messages: { default: 20_000, help: "burn-down: messages enqueued before the consumer starts" },
  rounds: {
    default: 1,
    help:
      "run every row this many times, the rows interleaved (each round in the other order); the acceptance " +
      "checks then take the median of the rounds' values (exactly-once: every round)",
  },
  "db-only": {
    default: 1,
    help:
      "1: also the database-only references (kiteq-pg's statements alone, no broker): burn-down (claim and " +
      "ack) and flat out awaited (publish and ack); 0 skips them",
  },
  "fill-batch": { default: 1000, help: "burn-down, pg-boss/graphile-worker: jobs per batch call" },
  "fill-calls": { default: 4, help: "burn-down, pg-boss/graphile-worker: batch calls in flight" },
  producers: {
    default: 16,
    help: "flat out awaited: producers, each awaiting one enqueue",
  },
  "kiteq-connections": {
    default: 1,
    help:
      "kiteq-pg: SDK connections its producers share (1: one client, as KiteQ's Go client and this SDK's " +
      "Producer hold one connection per broker for every sender of an application; --producers: one each)",
  },
  pipeline: { default: 64, help: "flat out pipelined (and kiteq-pg's burn-down fill): enqueues in flight" },
  "flat-seconds": { default: 10, help: "flat out: seconds of producing, each form" },
  "steady-seconds": { default: 10, help: "steady: seconds of offered load" },
  "steady-fraction": {
    default: 0.5,
    help: "steady: offered rate as a fraction of the row's flat-out awaited rate",
  },
  rate: { default: 0, help: "steady: offer this rate to every row instead, once (0: --steady-fraction)" },
  "steady-attempts": {
    default: 3,
    help: "steady: attempts at most, each at half the rate while the row did not carry it",
  },
  "warmup-seconds": { default: 1, help: "steady and flat out: first seconds left out of the figures" },
  "drain-seconds": { default: 120, help: "longest wait for the consumer to catch up after a phase" },
  "peer-pool": {
    default: 64,
    help: "pg-boss, graphile-worker: producer pool size (one connection per enqueue in flight)",
  },
  "pgboss-workers": { default: 4, help: "pg-boss: work() localConcurrency in the consumer" },
  "pgboss-batch": { default: 100, help: "pg-boss: batchSize of each worker" },
  "pgboss-pool": { default: 10, help: "pg-boss: consumer pool size" },
  "pgboss-poll-seconds": { default: 0.5, help: "pg-boss: pollingIntervalSeconds (0.5 is its minimum)" },
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

function makeSystem(key: string, env: BenchEnv, f: CompareFlags): SystemUnderTest {
  const o: SystemOptions = {
    producers: f.producers,
    kiteqConnections: f["kiteq-connections"],
    peerProducerPool: f["peer-pool"],
    bodySize: f["body-size"],
  };
  const boss: PgBossSettings = {
    workers: f["pgboss-workers"],
    batchSize: f["pgboss-batch"],
    pollingIntervalSeconds: f["pgboss-poll-seconds"],
    poolSize: f["pgboss-pool"],
  };
  switch (key) {
    case "kiteq-pg":
      return new KiteqSystem(env, o, KITEQ_DEFAULTS);
    case "kiteq-pg-uncapped":
      return new KiteqSystem(env, o, KITEQ_UNCAPPED);
    case "pg-boss-notify":
      return new PgBossSystem(env, o, boss, true);
    case "pg-boss-poll":
      return new PgBossSystem(env, o, boss, false);
    case "graphile-worker":
      return new GraphileSystem(env, o, {
        concurrency: f["graphile-concurrency"],
        maxPoolSize: f["graphile-pool"],
        localQueueSize: f["graphile-local-queue"],
        completeJobBatchDelay: f["graphile-complete-delay"],
        pollInterval: 2000,
      });
    default:
      throw new UsageError(`--systems: unknown row "${key}" (known: ${ALL_SYSTEMS.join(", ")})`);
  }
}

function parseSystems(raw: string): string[] {
  const keys = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const k of keys) {
    if (!(ALL_SYSTEMS as readonly string[]).includes(k)) {
      throw new UsageError(`--systems: unknown row "${k}" (known: ${ALL_SYSTEMS.join(", ")})`);
    }
  }
  if (keys.length === 0) throw new UsageError("--systems: no rows");
  return keys;
}

function phaseOptions(f: CompareFlags): PhaseOptions {
  for (const k of [
    "messages",
    "fill-batch",
    "fill-calls",
    "producers",
    "pipeline",
    "kiteq-connections",
    "rounds",
  ] as const) {
    if (!Number.isInteger(f[k]) || f[k] < 1) throw new UsageError(`--${k} must be an integer >= 1`);
  }
  if (f["flat-seconds"] <= 0 || f["steady-seconds"] <= 0 || f["drain-seconds"] <= 0) {
    throw new UsageError("--flat-seconds, --steady-seconds and --drain-seconds must be > 0");
  }
  if (f.rate === 0 && (f["steady-fraction"] <= 0 || f["steady-fraction"] > 1)) {
    throw new UsageError("--steady-fraction must be in (0, 1]");
  }
  if (f["pgboss-poll-seconds"] < 0.5) throw new UsageError("--pgboss-poll-seconds: pg-boss requires >= 0.5");
  return {
    warmupMessages: f["warmup-messages"],
    messages: f.messages,
    fillBatch: f["fill-batch"],
    fillCalls: f["fill-calls"],
    producers: f.producers,
    pipeline: f.pipeline,
    steadyAttempts: f.rate > 0 ? 1 : Math.max(1, f["steady-attempts"]),
    flatSeconds: f["flat-seconds"],
    steadySeconds: f["steady-seconds"],
    warmupSeconds: f["warmup-seconds"],
    drainSeconds: f["drain-seconds"],
    steady: { fixedRate: f.rate, fraction: f["steady-fraction"], minRate: 50 },
  };
}

export const comparePeersSuite: Suite = {
  name: "compare",
  summary:
    "kiteq-pg (KiteQ defaults, uncapped) vs pg-boss (NOTIFY, polling) vs graphile-worker: burn-down, flat out, steady",
  flags: FLAGS,
  async run(argv) {
    const f = parseSuiteFlags(argv, FLAGS);
    const keys = parseSystems(f.systems);
    const phases = phaseOptions(f);
    const labels: PhaseLabels = { awaited: `${f.producers}x1`, pipelined: `${f.pipeline} in flight` };
    const peers = PEER_PACKAGES.map((n) => installedPackage(n));
    const caveats = peers.flatMap((p) => enginesCaveat(p, process.version) ?? []);
    console.error(
      `bench: peers ${peers.map((p) => `${p.name} ${p.version}`).join(", ")}; Node.js ${process.version}`,
    );
    for (const c of caveats) console.error(`bench: ${c}`);
    const progress = new Progress();
    return withEnv("compare", { freshWal: f["fresh-wal"] === 1 }, async (env) => {
      // Each round's rows in table order; a round after the first runs them in the other order,
      // so no row always runs first after the server started, or right after the same neighbour.
      const rounds: SystemResult[][] = [];
      for (let round = 1; round <= f.rounds && !env.interrupted; round++) {
        const order = round % 2 === 1 ? keys : [...keys].reverse();
        if (f.rounds > 1) progress.note(`round ${round} of ${f.rounds}: ${order.join(", ")}`);
        const byKey = new Map<string, SystemResult>();
        for (const key of order)
          byKey.set(key, await runPhases(makeSystem(key, env, f), env, phases, progress));
        rounds.push(keys.flatMap((k) => byKey.get(k) ?? []));
      }
      progress.end();
      const results = rounds[rounds.length - 1] ?? [];
      let dbOnly: DbOnlyBurnDown | null = null;
      let dbOnlyFlat: DbOnlyAwaited | null = null;
      if (f["db-only"] === 1 && !env.interrupted) {
        progress.note("database only: kiteq-pg's claim and ack statements alone, burn-down");
        dbOnly = await dbOnlyBurnDown(env, f.messages, f["body-size"]);
      }
      if (f["db-only"] === 1 && !env.interrupted) {
        progress.note(`database only: kiteq-pg's publish and ack statements alone, ${labels.awaited}`);
        dbOnlyFlat = await dbOnlyAwaited(env, {
          producers: f.producers,
          seconds: f["flat-seconds"],
          warmupSeconds: f["warmup-seconds"],
          bodySize: f["body-size"],
        });
      }
      const perRound = rounds.map((r) => ({
        results: r,
        advantages: advantageTables(r),
        acceptance: acceptanceChecks(r),
      }));
      for (const [i, r] of perRound.entries()) {
        if (rounds.length > 1) console.log(`\n=== round ${i + 1} of ${rounds.length} ===`);
        printCompare(r.results, r.advantages, r.acceptance, labels, caveats);
      }
      const advantages = perRound[perRound.length - 1]?.advantages ?? [];
      const acceptance = perRound[perRound.length - 1]?.acceptance ?? [];
      const overRounds = rounds.length > 1 ? acceptanceOverRounds(perRound.map((r) => r.acceptance)) : null;
      if (overRounds !== null) printRounds(overRounds, rounds.length);
      if (dbOnly !== null) printDbOnly(dbOnly, results);
      if (dbOnlyFlat !== null) printDbOnlyAwaited(dbOnlyFlat, results, labels.awaited);
      const machine = await machineInfo();
      const stamp = timestamp();
      const steadyRule =
        f.rate > 0
          ? `${fmt(f.rate)}/s for every row`
          : `${Math.round(f["steady-fraction"] * 100)}% of the row's ${labels.awaited} rate`;
      const subtitle =
        `${new Date().toISOString().slice(0, 16)}Z, ${machine.cpus} CPU, Node.js ${process.version}, PostgreSQL fsync on; ` +
        `burn-down ${fmt(f.messages)}, flat ${labels.awaited} and ${labels.pipelined} ${f["flat-seconds"]} s each, ` +
        `steady ${f["steady-seconds"]} s at ${steadyRule}, body ${f["body-size"]} B`;
      const notes = [
        `burn-down fill: peers through their batch APIs (${f["fill-batch"]} per call, ${f["fill-calls"]} calls in flight); ` +
          `kiteq-pg has no batch publish on the wire: pipelined single publishes, ${f.pipeline} in flight`,
        `flat ${labels.awaited}: ${f.producers} producers each awaiting one enqueue (kiteq-pg: ${kiteqConnectionsNote(f["kiteq-connections"], f.producers)}; ` +
          `peers: a pool of ${f["peer-pool"]}, one connection per enqueue in flight)`,
        "latency: from the start of the enqueue call (steady: its scheduled time) to the handler call; " +
          "exactly-once checked in every phase of every row",
        ...caveats,
      ];
      const json = await writeResult(
        resultPath(f.out, "compare", stamp, "json"),
        `${JSON.stringify(
          {
            suite: "compare",
            at: new Date().toISOString(),
            machine,
            postgres: await env.describeSettings(),
            peers: peers.map((p) => ({ ...p, caveat: enginesCaveat(p, process.version) ?? null })),
            flags: f,
            results,
            advantages,
            acceptance,
            // With --rounds > 1: every round (results above are the last one's) and the medians.
            rounds: rounds.length > 1 ? perRound : undefined,
            acceptanceOverRounds: overRounds ?? undefined,
            databaseOnlyBurnDown: dbOnly,
            databaseOnlyAwaited: dbOnlyFlat,
            benchProcessPeakRssKb: peakRssKb(process.pid) ?? null,
          },
          null,
          2,
        )}\n`,
      );
      const roundNote =
        rounds.length > 1
          ? [`round ${rounds.length} of ${rounds.length} (every round's tables and the medians: the JSON)`]
          : [];
      const svg = await writeResult(
        resultPath(f.out, "compare", stamp, "svg"),
        chartOf(results, labels, subtitle, [...roundNote, ...notes]),
      );
      console.log(
        `\nresults: ${path.relative(process.cwd(), json)}\nchart:   ${path.relative(process.cwd(), svg)}`,
      );
      const failed = rounds.flatMap((round, i) =>
        round.filter((r) => r.failures.length > 0).map((r) => ({ r, round: i + 1 })),
      );
      for (const { r, round } of failed) {
        const where = rounds.length > 1 ? ` (round ${round})` : "";
        for (const x of r.failures) console.error(`FAILURE: ${r.name}${where}: ${x}`);
      }
      return failed.length > 0 ? 1 : 0;
    });
  },
};

/** How kiteq-pg's producers reach the broker, for the chart's notes. */
function kiteqConnectionsNote(connections: number, producers: number): string {
  if (connections === 1) return "one SDK connection shared by the producers, as one client in an application";
  if (connections >= producers) return "an SDK connection each";
  return `${connections} SDK connections, the producers spread over them`;
}

/** The database-only burn-down and each kiteq-pg row's burn-down as a share of it. */
function printDbOnly(d: DbOnlyBurnDown, results: readonly SystemResult[]): void {
  const shares = results
    .filter((r) => r.name.startsWith("kiteq-pg") && r.burnDown !== null)
    .map((r) => `${r.name} ${Math.round((100 * r.burnDown!.throughputPerSec) / d.consumePerSec)}%`);
  console.log(
    `\ncompare: database-only reference: kiteq-pg's claim (${fmt(d.claimBatch)}) and ack statements alone, ` +
      `one after the other on one connection, no broker: burn-down of ${fmt(d.messages)} at ${fmt(d.consumePerSec)}/s ` +
      `(claim ${d.claimUsPerMessage} us, ack ${d.ackUsPerMessage} us per message); ${shares.join(", ")} of it`,
  );
}

/** The database-only awaited (16x1) reference and each kiteq-pg row's flat awaited rate as a share of it. */
function printDbOnlyAwaited(d: DbOnlyAwaited, results: readonly SystemResult[], awaited: string): void {
  const shares = results
    .filter((r) => r.name.startsWith("kiteq-pg") && r.flatAwaited !== null)
    .map((r) => `${r.name} ${Math.round((100 * r.flatAwaited!.throughputPerSec) / d.perSec)}%`);
  console.log(
    `compare: database-only reference, ${awaited}: ${d.producers} callers each awaiting its message's publish ` +
      `statement (one batch at a time: ${d.batchMean} a statement), every delivery pre-claimed and acked beside ` +
      `(${ACK_WINDOW_MS} ms ack window), no broker, no wire: ${fmt(d.perSec)}/s over ${d.seconds} s; ${shares.join(", ")} of it`,
  );
}
