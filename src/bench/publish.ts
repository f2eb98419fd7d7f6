/**
 * `bench publish`: acked publishes per second and ack latency of one broker (child process) on an
 * embedded PostgreSQL (fsync on): flat out at 1, 4 and 16 connections with a window of in-flight
 * publishes each, then a fixed offered rate paced on a timer (latency from the scheduled send time).
 */
import path from "node:path";
import type { KiteqConnection } from "../client/connection.js";
import { startBrokerChild } from "./broker-child.js";
import { flatOut, paced } from "./drivers.js";
import { withEnv } from "./environment.js";
import { intList, parseSuiteFlags } from "./flags.js";
import { closeAll, connectMany, publishBench } from "./kiteq-load.js";
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
  ...COMMON_FLAGS,
} as const;

/** Targets printed beside the figures. */
const TARGET_ACKED_PER_SEC_16 = 30_000;
const TARGET_P99_MS_AT_RATE = 10;
const TOPIC = "bench-publish";

interface FlatFigures {
  connections: number;
  window: number;
  ackedPerSec: number;
  failed: number;
  latencyMs: LatencySummary;
}

export const publishSuite: Suite = {
  name: "publish",
  summary: "acked publishes/s and ack latency (flat out at 1/4/16 connections; fixed offered rate)",
  flags: FLAGS,
  async run(argv) {
    const f = parseSuiteFlags(argv, FLAGS);
    const connectionCounts = intList("connections", f.connections);
    const warmupMs = f["warmup-seconds"] * 1000;
    const durationMs = f.seconds * 1000;
    const progress = new Progress();
    return withEnv("publish", async (env) => {
      const { url } = await env.kiteqDatabase("bench_publish");
      const broker = await startBrokerChild({ dbUrl: url, dataDir: path.join(env.dir, "broker") });
      env.defer(() => broker.stop());
      progress.note(
        `broker pid ${broker.pid} on 127.0.0.1:${broker.port}, PostgreSQL on port ${env.pg.port}`,
      );

      const flat: FlatFigures[] = [];
      for (const n of connectionCounts) {
        const conns = await connectMany(broker.port, n);
        try {
          progress.timed(`flat out, ${n} connection(s)`, warmupMs + durationMs);
          flat.push(await flatRun(conns, f.window, warmupMs, durationMs, f["body-size"]));
        } finally {
          progress.end();
          closeAll(conns);
        }
      }

      const fixed =
        f.rate > 0 ? await fixedRateRun(broker.port, f, warmupMs, durationMs, progress) : undefined;
      progress.end();

      const peakRssKb = broker.peakRssKb();
      printTable(
        "publish, flat out (acked publishes per second; ack latency in ms)",
        ["connections", "window", "acked/s", "p50 ms", "p99 ms", "max ms", "failed", "target"],
        flat.map((r) => [
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
      if (fixed) {
        printTable(
          "publish, fixed offered rate (latency from the scheduled send time, ms)",
          ["offered/s", "connections", "acked/s", "p50 ms", "p99 ms", "max ms", "failed", "target"],
          [
            [
              fixed.offeredPerSec,
              fixed.connections,
              fixed.ackedPerSec,
              fixed.latencyMs.p50,
              fixed.latencyMs.p99,
              fixed.latencyMs.max,
              fixed.failed,
              `p99 <= ${TARGET_P99_MS_AT_RATE} ms ${verdict(fixed.latencyMs.p99 <= TARGET_P99_MS_AT_RATE)}`,
            ],
          ],
        );
      }
      console.log(
        `\nbroker peak RSS: ${peakRssKb === undefined ? "?" : `${Math.round(peakRssKb / 1024)} MiB`}`,
      );
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
            flat,
            fixedRate: fixed ?? null,
            brokerPeakRssKb: peakRssKb ?? null,
          },
          null,
          2,
        )}\n`,
      );
      console.log(`results: ${path.relative(process.cwd(), file)}`);
      return flat.some((r) => r.failed > 0) || (fixed?.failed ?? 0) > 0 ? 1 : 0;
    });
  },
};

/** Flat out over `conns` with `window` publishes in flight each; acks completing in the window count. */
async function flatRun(
  conns: KiteqConnection[],
  window: number,
  warmupMs: number,
  durationMs: number,
  bodySize: number,
): Promise<FlatFigures> {
  const from = nowMs() + warmupMs;
  const to = from + durationMs;
  const latency = new Samples();
  let acked = 0;
  const result = await flatOut(conns.length * window, to, async (k, i) => {
    const sentAt = nowMs();
    await publishBench(conns[k % conns.length]!, TOPIC, bodySize, sentAt, i);
    const at = nowMs();
    if (at >= from && at <= to) {
      acked++;
      latency.add(at - sentAt);
    }
  });
  return {
    connections: conns.length,
    window,
    ackedPerSec: round(acked / (durationMs / 1000), 0),
    failed: result.failed,
    latencyMs: latency.summary(),
  };
}

/** The fixed offered rate run; samples scheduled during the warm-up are not counted. */
async function fixedRateRun(
  port: number,
  f: { rate: number; "rate-connections": number; "body-size": number },
  warmupMs: number,
  durationMs: number,
  progress: Progress,
) {
  const conns = await connectMany(port, f["rate-connections"]);
  try {
    const latency = new Samples();
    let first = Number.NaN;
    let counted = 0;
    progress.track(
      `fixed rate ${f.rate}/s`,
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
