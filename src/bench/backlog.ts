/**
 * `npm run bench -- backlog`: does background work stay flat as a backlog grows (issue 11)?
 *
 * For each size in --owed: a fresh database with a backlog built set-based (that many deliveries
 * owed to one group and never acked, as many acked with full history, a tenth as many uncommitted
 * 2PC messages); then
 * 1. p50/p99 of every background and operator statement (the statement catalogue of src/store),
 *    each run --reps times in a transaction that is rolled back, on a session like the broker's;
 * 2. SIGTERM to exit of a broker that serves the backlog to a consumer that never acks;
 * 3. the drain rate when a consumer that acks comes back (one broker, one consumer, KiteQ's
 *    defaults: the group's watermark caps it at 6,000/s);
 * 4. database size per million messages.
 * Verdict: every statement's p50 at the largest size within 2x of its p50 at the smallest (plus
 * 1 ms of timer noise), shutdown within 10 s everywhere, drain >= 5,000 msg/s at the largest size.
 */

import { directBinding } from "../binding/binding.js";
import { KiteqConnection } from "../client/connection.js";
import {
  analyzeBacklogTables,
  type BacklogFixture,
  buildBacklog,
  databaseSize,
  sampleBacklog,
} from "../store/backlog-fixture.js";
import { upsertBinding } from "../store/bindings.js";
import { BROKER_POOL_SETTINGS, createPool } from "../store/db.js";
import { countOwedDeliveries } from "../store/deliveries.js";
import { GROWS_BY_DESIGN, partitionUpkeep, statementCatalog } from "../store/statement-catalog.js";
import { startBrokerChild } from "./broker-child.js";
import { type BenchEnv, withEnv } from "./environment.js";
import { intList, parseSuiteFlags } from "./flags.js";
import { fmt, printTable, resultPath, timestamp, verdict, writeResult } from "./output.js";
import { quantile } from "./stats.js";

/** The p-th percentile of sorted milliseconds. */
function percentile(sorted: number[], p: number): number {
  return quantile(Float64Array.from(sorted), p / 100);
}

import { COMMON_FLAGS, type Suite } from "./suite.js";

const FLAGS = {
  owed: { default: "10000,1000000", help: "backlog sizes (owed deliveries), e.g. 10000,1000000,10000000" },
  reps: { default: 30, help: "runs of each statement per size" },
  "drain-seconds": { default: 400, help: "longest drain measured before it is cut off (s)" },
  "grace-seconds": { default: 10, help: "the broker's --shutdown-grace-seconds" },
  out: COMMON_FLAGS.out,
  "fresh-wal": COMMON_FLAGS["fresh-wal"],
} as const;

/** Timer noise allowed on top of 2x (sub-millisecond statements double on a hiccup). */
const NOISE_MS = 1;

interface StatementFigures {
  name: string;
  p50: number;
  p99: number;
}

interface SizeResult {
  owed: number;
  buildSeconds: number;
  statements: StatementFigures[];
  shutdownSeconds: number;
  shutdownExitCode: number | null;
  drainPerSecond: number;
  drained: number;
  /** The drain was stopped by --drain-seconds before the backlog was empty (the rate still counts). */
  drainCutOff: boolean;
  databaseBytes: number;
  messages: number;
}

async function timeStatements(url: string, fx: BacklogFixture, reps: number): Promise<StatementFigures[]> {
  const pool = createPool(url, { max: 2, name: "kiteq-bench backlog", settings: BROKER_POOL_SETTINGS });
  try {
    const sample = await sampleBacklog(pool, fx, 2000);
    const out: StatementFigures[] = [];
    const client = await pool.connect();
    try {
      for (const entry of statementCatalog(fx, sample)) {
        const times: number[] = [];
        for (let i = 0; i < reps; i++) {
          await client.query("BEGIN");
          const t0 = performance.now();
          await entry.run(client);
          times.push(performance.now() - t0);
          await client.query("ROLLBACK");
        }
        times.sort((a, b) => a - b);
        out.push({ name: entry.name, p50: percentile(times, 50), p99: percentile(times, 99) });
      }
    } finally {
      client.release();
    }
    const upkeep: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await partitionUpkeep(pool, new Date());
      upkeep.push(performance.now() - t0);
    }
    upkeep.sort((a, b) => a - b);
    out.push({
      name: "partition upkeep (days present)",
      p50: percentile(upkeep, 50),
      p99: percentile(upkeep, 99),
    });
    return out;
  } finally {
    await pool.end();
  }
}

async function measureSize(
  env: BenchEnv,
  owed: number,
  flags: { reps: number; drainSeconds: number; graceSeconds: number },
): Promise<SizeResult> {
  const { url, pool } = await env.kiteqDatabase(`backlog_${owed}`);
  process.stderr.write(`backlog ${fmt(owed)}: building ...`);
  const t0 = performance.now();
  const fx = await buildBacklog(pool, {
    owed,
    now: new Date(),
    onProgress: (n) => {
      if (process.stderr.isTTY)
        process.stderr.write(`\rbacklog ${fmt(owed)}: building ... ${fmt(n)} messages`);
    },
  });
  const buildSeconds = (performance.now() - t0) / 1000;
  process.stderr.write(`\rbacklog ${fmt(owed)}: built in ${buildSeconds.toFixed(1)} s${" ".repeat(20)}\n`);
  // As a running system would have them: autovacuum's statistics, whatever they are by now.
  await analyzeBacklogTables(pool);
  const messages = 2 * owed + Math.ceil(owed / 10);
  const databaseBytes = await databaseSize(pool);

  process.stderr.write(`backlog ${fmt(owed)}: timing statements ...\n`);
  const statements = await timeStatements(url, fx, flags.reps);

  await upsertBinding(pool, directBinding(fx.group, fx.topic, "backlog", 6000, true), "cli", new Date());

  // SIGTERM with the backlog owed and a consumer that never acks.
  process.stderr.write(`backlog ${fmt(owed)}: SIGTERM with a consumer that never acks ...\n`);
  const broker = await startBrokerChild({
    dbUrl: url,
    dataDir: `${env.dir}/backlog-${owed}-a`,
    extraArgs: ["--shutdown-grace-seconds", String(flags.graceSeconds), "--recover-seconds", "1"],
  });
  const silent = await KiteqConnection.connect({ host: broker.host, port: broker.port, groupId: fx.group });
  let pushed = 0;
  silent.onMessage(() => {
    pushed++;
    return new Promise<boolean>(() => undefined);
  });
  await waitUntil(() => pushed > 0, 30_000);
  await sleep(2000);
  const tStop = performance.now();
  const exitCode = await broker.stop(60_000);
  const shutdownSeconds = (performance.now() - tStop) / 1000;
  silent.close();

  // Drain: one consumer that acks, one broker.
  process.stderr.write(`backlog ${fmt(owed)}: draining ...\n`);
  const drainer = await startBrokerChild({ dbUrl: url, dataDir: `${env.dir}/backlog-${owed}-b` });
  env.defer(async () => {
    await drainer.stop();
  });
  const consumer = await KiteqConnection.connect({
    host: drainer.host,
    port: drainer.port,
    groupId: fx.group,
  });
  let acked = 0;
  let first = 0;
  let last = 0;
  consumer.onMessage(() => {
    const now = performance.now();
    if (acked === 0) first = now;
    acked++;
    last = now;
    return true;
  });
  const deadline = performance.now() + flags.drainSeconds * 1000;
  let owedNow = owed;
  while (performance.now() < deadline) {
    await sleep(1000);
    owedNow = (await countOwedDeliveries(pool)).get(fx.group) ?? 0;
    if (process.stderr.isTTY)
      process.stderr.write(`\rbacklog ${fmt(owed)}: draining ... ${fmt(owed - owedNow)} acked`);
    if (owedNow === 0) break;
  }
  process.stderr.write("\n");
  consumer.close();
  await drainer.stop();
  const seconds = (last - first) / 1000;
  const drainPerSecond = seconds > 0 ? (acked - 1) / seconds : 0;
  return {
    owed,
    buildSeconds,
    statements,
    shutdownSeconds,
    shutdownExitCode: exitCode,
    drainPerSecond,
    drained: owed - owedNow,
    drainCutOff: owedNow > 0,
    databaseBytes,
    messages,
  };
}

export const backlogSuite: Suite = {
  name: "backlog",
  summary: "background statements, shutdown and drain with 10k .. 10M deliveries owed (issue 11)",
  flags: FLAGS,
  async run(argv) {
    const flags = parseSuiteFlags(argv, FLAGS);
    const sizes = intList("owed", flags.owed).sort((a, b) => a - b);
    const results = await withEnv("backlog", { freshWal: flags["fresh-wal"] === 1 }, async (env) => {
      const out: SizeResult[] = [];
      for (const owed of sizes) {
        out.push(
          await measureSize(env, owed, {
            reps: flags.reps,
            drainSeconds: flags["drain-seconds"],
            graceSeconds: flags["grace-seconds"],
          }),
        );
      }
      return { sizes: out, settings: await env.describeSettings() };
    });
    return report(results.sizes, results.settings, flags.out, flags["grace-seconds"]);
  },
};

async function report(
  sizes: SizeResult[],
  settings: Record<string, string>,
  out: string,
  graceSeconds: number,
): Promise<number> {
  const smallest = sizes[0]!;
  const largest = sizes[sizes.length - 1]!;
  const names = smallest.statements.map((s) => s.name);
  const failures: string[] = [];
  const rows = names.map((name) => {
    const cells: (string | number)[] = [name];
    for (const s of sizes) {
      const f = s.statements.find((x) => x.name === name)!;
      cells.push(`${fmt(f.p50)} / ${fmt(f.p99)}`);
    }
    const base = smallest.statements.find((x) => x.name === name)!.p50;
    const top = largest.statements.find((x) => x.name === name)!.p50;
    const ratio = base > 0 ? top / base : 1;
    const grows = GROWS_BY_DESIGN.get(name);
    const ok = grows !== undefined || top <= 2 * base + NOISE_MS;
    if (!ok && sizes.length > 1) failures.push(`${name}: p50 ${fmt(base)} -> ${fmt(top)} ms`);
    cells.push(
      sizes.length <= 1
        ? "-"
        : grows !== undefined
          ? `${fmt(ratio)}x (${grows})`
          : `${fmt(ratio)}x ${verdict(ok)}`,
    );
    return cells;
  });
  printTable(
    "statement p50 / p99 (ms), by deliveries owed",
    ["statement", ...sizes.map((s) => fmt(s.owed)), `p50 ratio (<= 2x + ${NOISE_MS} ms)`],
    rows,
  );
  const shutdownOk = (s: SizeResult) => s.shutdownSeconds <= graceSeconds && s.shutdownExitCode === 0;
  for (const s of sizes) {
    if (!shutdownOk(s))
      failures.push(
        `shutdown at ${fmt(s.owed)}: ${s.shutdownSeconds.toFixed(1)} s, exit ${s.shutdownExitCode}`,
      );
  }
  const drainOk = largest.drainPerSecond >= 5000 && (largest.drained === largest.owed || largest.drainCutOff);
  if (!drainOk)
    failures.push(
      `drain at ${fmt(largest.owed)}: ${fmt(largest.drainPerSecond)} msg/s, ${fmt(largest.drained)} drained`,
    );
  printTable(
    "shutdown, drain and size",
    [
      "owed",
      "build s",
      "SIGTERM -> exit s",
      "exit",
      "drain msg/s (1 consumer, watermark 6,000/s)",
      "drained",
      "DB MiB per 1M messages",
    ],
    sizes.map((s) => [
      s.owed,
      s.buildSeconds,
      `${s.shutdownSeconds.toFixed(2)} ${verdict(shutdownOk(s))}`,
      String(s.shutdownExitCode),
      s === largest ? `${fmt(s.drainPerSecond)} ${verdict(drainOk)}` : fmt(s.drainPerSecond),
      s.drainCutOff ? `${fmt(s.drained)} (cut off by --drain-seconds)` : s.drained,
      (s.databaseBytes / 1024 / 1024 / s.messages) * 1_000_000,
    ]),
  );
  console.log(
    "\nmessages per size: owed + as many acked (received, delivered, acked rows) + owed/10 dead letters + owed/10 uncommitted; " +
      `each statement run in a rolled-back transaction with the broker's session settings; PostgreSQL: ${Object.entries(
        settings,
      )
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")}`,
  );
  const ok = failures.length === 0;
  console.log(`\nverdict: ${ok ? "PASS" : "FAIL"}${ok ? "" : `\n  ${failures.join("\n  ")}`}`);
  const file = await writeResult(
    resultPath(out, "backlog", timestamp(), "json"),
    `${JSON.stringify({ suite: "backlog", at: new Date().toISOString(), settings, sizes, verdict: ok, failures }, null, 2)}\n`,
  );
  console.log(`results: ${file}`);
  return ok ? 0 : 1;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(50);
  }
}
