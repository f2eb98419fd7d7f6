/**
 * `bench publish`: acked publishes per second and ack latency of one broker (child process) on an
 * embedded PostgreSQL (fsync on): flat out at 1, 4 and 16 connections with a window of in-flight
 * publishes each, then a fixed offered rate paced on a timer (latency from the scheduled send time).
 * With `--nodes 1,2,3` all of it runs once per node count, N brokers on the same PostgreSQL and
 * the connections spread round-robin over them (nodes.ts).
 */
import path from "node:path";
import type { KiteqConnection } from "../client/connection.js";
import { flatOut, paced } from "./drivers.js";
import { withEnv } from "./environment.js";
import { intList, parseSuiteFlags } from "./flags.js";
import { closeAll, connectSpread, publishBench } from "./kiteq-load.js";
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
    return withEnv("publish", async (env) => {
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
        for (const n of connectionCounts) {
          if (env.interrupted) break;
          if (n < nodes) progress.note(`${n} connection(s) on ${nodes} nodes: some nodes get no publishes`);
          const conns = await connectSpread(ports, n);
          try {
            progress.timed(`${nodes} node(s), flat out, ${n} connection(s)`, warmupMs + durationMs);
            flat.push(await flatRun(conns, nodes, f.window, warmupMs, durationMs, f["body-size"]));
          } finally {
            progress.end();
            closeAll(conns);
          }
        }
        if (f.rate > 0 && !env.interrupted)
          fixed.push(await fixedRateRun(ports, f, warmupMs, durationMs, progress));
        progress.end();
        rss.push(...cluster.peakRss());
        await cluster.stop();
      }
      // Interrupted: the figures are cut short, nothing is reported.
      if (env.interrupted) return INTERRUPTED;

      printTable(
        "publish, flat out (acked publishes per second; ack latency in ms)",
        ["nodes", "connections", "window", "acked/s", "p50 ms", "p99 ms", "max ms", "failed", "target"],
        flat.map((r) => [
          r.nodes,
          r.connections,
          r.window,
          r.ackedPerSec,
          r.latencyMs.p50,
          r.latencyMs.p99,
          r.latencyMs.max,
          r.failed,
          r.connections === 16
            ? `>= ${TARGET_ACKED_PER_SEC_16.toLocaleString("en-US")}/s ${verdict(r.ackedPerSec >= TARGET_ACKED_PER_SEC_16)}`
            : "",
        ]),
      );
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
