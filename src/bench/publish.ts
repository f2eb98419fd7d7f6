/**
 * `bench publish`: acked publishes per second and ack latency of one broker (child process) on an
 * embedded PostgreSQL (fsync on): a fixed offered rate paced on a timer (latency from the scheduled
 * send time), then flat out at 1, 4 and 16 connections with a window of in-flight publishes each.
 * With `--nodes 1,2,3` all of it runs once per node count, N brokers on the same PostgreSQL and
 * the connections spread round-robin over them (nodes.ts).
 *
 * The reference: the same flat-out shapes with no broker at all ("database only"), the publish
 * statement (INSERT_PUBLISH_BATCH) run straight from N PostgreSQL connections, each awaiting a
 * batch of `window` messages, so the same number of messages is in flight. What the broker adds
 * (protocol, validation, batching, acks over TCP) is the gap between the two rows.
 */
import path from "node:path";
import type { KiteqConnection } from "../client/connection.js";
import { BROKER_POOL_SETTINGS, createPool } from "../store/db.js";
import { insertPublishBatch, type PublishRecord } from "../store/messages.js";
import { flatOut, paced } from "./drivers.js";
import { withEnv } from "./environment.js";
import { intList, parseSuiteFlags } from "./flags.js";
import { closeAll, connectSpread, publishBench, storedBenchRecord } from "./kiteq-load.js";
import {
  maxPeakRssKb,
  NODES_FLAG,
  type NodeRss,
  nodeCounts as parseNodeCounts,
  printPeakRss,
  startBrokerNodes,
} from "./nodes.js";
import { machineInfo, Progress, printTable, resultPath, timestamp, verdict, writeResult } from "./output.js";
import { type LatencySummary, nowMs, round, Samples } from "./stats.js";
import { COMMON_FLAGS, type Suite } from "./suite.js";

const FLAGS = {
  connections: { default: "1,4,16", help: "connection counts of the flat-out runs" },
  window: { default: 64, help: "publishes in flight per connection (flat out)" },
  seconds: { default: 10, help: "measured seconds of each run" },
  "warmup-seconds": { default: 2, help: "unmeasured seconds before each run" },
  rate: { default: 5000, help: "offered publishes per second of the fixed-rate run (0 skips it)" },
  "db-only": { default: 1, help: "1 also runs the database-only reference (no broker), 0 skips it" },
  "rate-connections": { default: 16, help: "connections of the fixed-rate run" },
  ...NODES_FLAG,
  ...COMMON_FLAGS,
} as const;

/** Targets printed beside the figures. */
const TARGET_ACKED_PER_SEC_16 = 30_000;
const TARGET_P99_MS_AT_RATE = 10;
const TOPIC = "bench-publish";
/** Exit status of a run cut short by SIGINT/SIGTERM (withEnv exits with it anyway). */
const INTERRUPTED = 130;

interface FlatFigures {
  nodes: number;
  connections: number;
  window: number;
  ackedPerSec: number;
  /** Acked publishes per second through each node's connections (node 1 first). */
  ackedPerSecByNode: number[];
  failed: number;
  latencyMs: LatencySummary;
}

type FixedFigures = Awaited<ReturnType<typeof fixedRateRun>>;

interface DbOnlyFigures {
  connections: number;
  /** Messages per statement (one transaction each). */
  batch: number;
  messagesPerSec: number;
  /** Latency of each batch's statement, i.e. of each message in it, ms. */
  latencyMs: LatencySummary;
}

export const publishSuite: Suite = {
  name: "publish",
  summary: "acked publishes/s and ack latency (flat out at 1/4/16 connections; fixed offered rate)",
  flags: FLAGS,
  async run(argv) {
    const f = parseSuiteFlags(argv, FLAGS);
    const connectionCounts = intList("connections", f.connections);
    const counts = parseNodeCounts(f.nodes);
    const warmupMs = f["warmup-seconds"] * 1000;
    const durationMs = f.seconds * 1000;
    const progress = new Progress();
    return withEnv("publish", { freshWal: f["fresh-wal"] === 1 }, async (env) => {
      const { url } = await env.kiteqDatabase("bench_publish");
      const flat: FlatFigures[] = [];
      const fixed: FixedFigures[] = [];
      const rss: NodeRss[] = [];
      for (const nodes of counts) {
        if (env.interrupted) return INTERRUPTED;
        const cluster = await startBrokerNodes(env, { dbUrl: url, count: nodes, label: "broker" });
        const ports = cluster.ports;
        progress.note(
          `${nodes} broker node(s): pid ${cluster.brokers.map((b) => b.pid).join(", ")} on 127.0.0.1:${ports.join(", ")}, PostgreSQL on port ${env.pg.port}`,
        );
        // The fixed-rate (latency) run first, on a system in steady state, as in bench e2e: the
        // flat-out runs write a million and more messages that PostgreSQL goes on checkpointing and
        // vacuuming for a minute, which is not what a steady producer at the fixed rate would see.
        if (f.rate > 0 && !env.interrupted)
          fixed.push(await checkpointed(url, () => fixedRateRun(ports, f, warmupMs, durationMs, progress)));
        for (const n of connectionCounts) {
          if (env.interrupted) break;
          if (n < nodes) progress.note(`${n} connection(s) on ${nodes} nodes: some nodes get no publishes`);
          const conns = await connectSpread(ports, n);
          try {
            progress.timed(`${nodes} node(s), flat out, ${n} connection(s)`, warmupMs + durationMs);
            flat.push(
              await checkpointed(url, () =>
                flatRun(conns, nodes, f.window, warmupMs, durationMs, f["body-size"]),
              ),
            );
          } finally {
            progress.end();
            closeAll(conns);
          }
        }
        progress.end();
        rss.push(...cluster.peakRss());
        await cluster.stop();
      }
      const dbOnly: DbOnlyFigures[] = [];
      if (f["db-only"] === 1) {
        for (const n of connectionCounts) {
          if (env.interrupted) break;
          progress.timed(`database only, ${n} connection(s) x ${f.window}`, warmupMs + durationMs);
          try {
            dbOnly.push(
              await checkpointed(url, () =>
                dbOnlyRun(url, n, f.window, warmupMs, durationMs, f["body-size"]),
              ),
            );
          } finally {
            progress.end();
          }
        }
      }
      // Interrupted: the figures are cut short, nothing is reported.
      if (env.interrupted) return INTERRUPTED;

      printTable(
        "publish, flat out (acked publishes per second; ack latency in ms)",
        [
          "nodes",
          "connections",
          "window",
          "acked/s",
          "of db-only",
          "p50 ms",
          "p99 ms",
          "max ms",
          "failed",
          "target",
        ],
        flat.map((r) => [
          r.nodes,
          r.connections,
          r.window,
          r.ackedPerSec,
          ofDbOnly(r, dbOnly),
          r.latencyMs.p50,
          r.latencyMs.p99,
          r.latencyMs.max,
          r.failed,
          r.connections === 16
            ? `>= ${TARGET_ACKED_PER_SEC_16.toLocaleString("en-US")}/s ${verdict(r.ackedPerSec >= TARGET_ACKED_PER_SEC_16)}`
            : "",
        ]),
      );
      if (dbOnly.length > 0) {
        printTable(
          "database only: the publish statement from N connections, each awaiting a batch of `window` messages (no broker)",
          ["connections", "batch", "messages/s", "p50 ms", "p99 ms", "max ms"],
          dbOnly.map((d) => [
            d.connections,
            d.batch,
            d.messagesPerSec,
            d.latencyMs.p50,
            d.latencyMs.p99,
            d.latencyMs.max,
          ]),
        );
      }
      if (fixed.length > 0) {
        printTable(
          "publish, fixed offered rate (latency from the scheduled send time, ms)",
          ["nodes", "offered/s", "connections", "acked/s", "p50 ms", "p99 ms", "max ms", "failed", "target"],
          fixed.map((x) => [
            x.nodes,
            x.offeredPerSec,
            x.connections,
            x.ackedPerSec,
            x.latencyMs.p50,
            x.latencyMs.p99,
            x.latencyMs.max,
            x.failed,
            `p99 <= ${TARGET_P99_MS_AT_RATE} ms ${verdict(x.latencyMs.p99 <= TARGET_P99_MS_AT_RATE)}`,
          ]),
        );
      }
      console.log("");
      printPeakRss(rss);
      const stamp = timestamp();
      const file = await writeResult(
        resultPath(f.out, "publish", stamp, "json"),
        `${JSON.stringify(
          {
            suite: "publish",
            at: new Date().toISOString(),
            machine: await machineInfo(),
            postgres: await env.describeSettings(),
            flags: f,
            targets: { ackedPerSecAt16: TARGET_ACKED_PER_SEC_16, p99MsAtRate: TARGET_P99_MS_AT_RATE },
            nodeCounts: counts,
            flat,
            databaseOnly: dbOnly,
            // One entry per node count (empty with --rate 0).
            fixedRate: fixed,
            brokers: rss,
            // The highest of all brokers' peak RSS.
            brokerPeakRssKb: maxPeakRssKb(rss),
          },
          null,
          2,
        )}\n`,
      );
      console.log(`results: ${path.relative(process.cwd(), file)}`);
      return flat.some((r) => r.failed > 0) || fixed.some((x) => x.failed > 0) ? 1 : 0;
    });
  },
};

/** Flat out over `conns` with `window` publishes in flight each; acks completing in the window count. */
async function flatRun(
  conns: KiteqConnection[],
  nodes: number,
  window: number,
  warmupMs: number,
  durationMs: number,
  bodySize: number,
): Promise<FlatFigures> {
  const from = nowMs() + warmupMs;
  const to = from + durationMs;
  const latency = new Samples();
  let acked = 0;
  const byNode = new Array<number>(nodes).fill(0);
  const result = await flatOut(conns.length * window, to, async (k, i) => {
    const sentAt = nowMs();
    // Connection c is on node c mod nodes (connectSpread).
    await publishBench(conns[k % conns.length]!, TOPIC, bodySize, sentAt, i);
    const at = nowMs();
    if (at >= from && at <= to) {
      acked++;
      byNode[(k % conns.length) % nodes]!++;
      latency.add(at - sentAt);
    }
  });
  return {
    nodes,
    connections: conns.length,
    window,
    ackedPerSec: round(acked / (durationMs / 1000), 0),
    ackedPerSecByNode: byNode.map((a) => round(a / (durationMs / 1000), 0)),
    failed: result.failed,
    latencyMs: latency.summary(),
  };
}

/** The fixed offered rate run; samples scheduled during the warm-up are not counted. */
async function fixedRateRun(
  ports: readonly number[],
  f: { rate: number; "rate-connections": number; "body-size": number },
  warmupMs: number,
  durationMs: number,
  progress: Progress,
) {
  const conns = await connectSpread(ports, f["rate-connections"]);
  try {
    const latency = new Samples();
    let first = Number.NaN;
    let counted = 0;
    progress.track(
      `${ports.length} node(s), fixed rate ${f.rate}/s`,
      Math.floor((f.rate * (warmupMs + durationMs)) / 1000),
      () => counted,
    );
    const result = await paced(f.rate, warmupMs + durationMs, async (i, at) => {
      if (Number.isNaN(first)) first = at;
      await publishBench(conns[i % conns.length]!, TOPIC, f["body-size"], at, i);
      counted++;
      if (at >= first + warmupMs) latency.add(nowMs() - at);
    });
    return {
      nodes: ports.length,
      offeredPerSec: f.rate,
      connections: conns.length,
      ackedPerSec: round(latency.count / (durationMs / 1000), 0),
      failed: result.failed,
      maxTimerLagMs: round(result.maxTimerLagMs),
      latencyMs: latency.summary(),
    };
  } finally {
    progress.end();
    closeAll(conns);
  }
}

/** "63%": the broker's rate as a share of the database-only rate of the same shape (1 node). */
function ofDbOnly(r: FlatFigures, dbOnly: readonly DbOnlyFigures[]): string {
  const d = dbOnly.find((x) => x.connections === r.connections && x.batch === r.window);
  if (d === undefined || d.messagesPerSec === 0 || r.nodes !== 1) return "";
  return `${Math.round((100 * r.ackedPerSec) / d.messagesPerSec)}%`;
}

/**
 * Database only: `connections` PostgreSQL connections (the broker's publish pool settings), each
 * running INSERT_PUBLISH_BATCH with `batch` fresh messages and awaiting it, in a loop.
 */
async function dbOnlyRun(
  url: string,
  connections: number,
  batch: number,
  warmupMs: number,
  durationMs: number,
  bodySize: number,
): Promise<DbOnlyFigures> {
  const pool = createPool(url, {
    max: connections,
    name: "kiteq-bench db-only",
    settings: BROKER_POOL_SETTINGS,
  });
  try {
    const from = nowMs() + warmupMs;
    const to = from + durationMs;
    const latency = new Samples();
    let messages = 0;
    const body = Buffer.alloc(bodySize, 120);
    await flatOut(connections, to, async () => {
      const now = new Date();
      const records: PublishRecord[] = [];
      for (let i = 0; i < batch; i++) records.push(storedBenchRecord(now, TOPIC, body));
      const sentAt = nowMs();
      await insertPublishBatch(pool, records, {
        now,
        nodeId: "bench-db-only",
        leaseUntil: new Date(now.getTime() + 30_000),
        firstTxCheckAt: now,
      });
      const at = nowMs();
      if (at >= from && at <= to) {
        messages += batch;
        for (let i = 0; i < batch; i++) latency.add(at - sentAt);
      }
    });
    return {
      connections,
      batch,
      messagesPerSec: round(messages / (durationMs / 1000), 0),
      latencyMs: latency.summary(),
    };
  } finally {
    await pool.end();
  }
}

/**
 * Run `measure` after a CHECKPOINT: every run starts with the earlier runs' writes on disk, so
 * none pays for flushing another's million messages (each still pays for its own).
 */
async function checkpointed<T>(url: string, measure: () => Promise<T>): Promise<T> {
  const pool = createPool(url, { max: 1, name: "kiteq-bench checkpoint" });
  try {
    await pool.query("CHECKPOINT");
  } finally {
    await pool.end();
  }
  return measure();
}
