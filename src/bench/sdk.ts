/**
 * `bench sdk`: publish throughput and store-ack latency of ONE SDK producer
 * (`kiteq-pg/client`'s createProducer), sequential awaits and with 64 sends in flight, beside
 * the same two runs on one raw protocol connection (KiteqConnection): what the SDK's retry,
 * failover and bookkeeping cost. One broker child on an embedded PostgreSQL (fsync on).
 */
import path from "node:path";
import { buildHeader, KiteqConnection } from "../client/connection.js";
import { createProducer } from "../client/producer.js";
import { flatOut } from "./drivers.js";
import { withEnv } from "./environment.js";
import { parseSuiteFlags } from "./flags.js";
import { benchBody, MESSAGE_TYPE, PRODUCER_GROUP } from "./kiteq-load.js";
import { startBrokerNodes } from "./nodes.js";
import { machineInfo, Progress, printTable, resultPath, timestamp, writeResult } from "./output.js";
import { type LatencySummary, nowMs, round, Samples } from "./stats.js";
import { COMMON_FLAGS, type Suite } from "./suite.js";

const FLAGS = {
  seconds: { default: 10, help: "measured seconds of each run" },
  "warmup-seconds": { default: 2, help: "unmeasured seconds before each run" },
  window: { default: 64, help: "sends in flight of the windowed runs" },
  ...COMMON_FLAGS,
} as const;

const TOPIC = "bench-sdk";

interface RunFigures {
  client: "sdk" | "raw";
  inFlight: number;
  sendsPerSec: number;
  failed: number;
  latencyMs: LatencySummary;
}

export const sdkSuite: Suite = {
  name: "sdk",
  summary: "one SDK producer: sends/s and ack latency, sequential and 64 in flight, vs a raw connection",
  flags: FLAGS,
  async run(argv) {
    const f = parseSuiteFlags(argv, FLAGS);
    const warmupMs = f["warmup-seconds"] * 1000;
    const durationMs = f.seconds * 1000;
    const progress = new Progress();
    return withEnv("sdk", { freshWal: f["fresh-wal"] === 1 }, async (env) => {
      const { url } = await env.kiteqDatabase("bench_sdk");
      const cluster = await startBrokerNodes(env, { dbUrl: url, count: 1, label: "broker" });
      const address = `127.0.0.1:${cluster.ports[0]}`;
      const runs: RunFigures[] = [];
      const producer = await createProducer({
        registry: [address],
        groupId: PRODUCER_GROUP,
        topics: [TOPIC],
      });
      const raw = await KiteqConnection.connect({
        host: "127.0.0.1",
        port: cluster.ports[0]!,
        groupId: PRODUCER_GROUP,
        heartbeatMs: 0,
        timeoutMs: 60_000,
      });
      try {
        for (const inFlight of [1, f.window]) {
          for (const client of ["sdk", "raw"] as const) {
            if (env.interrupted) break;
            progress.timed(`${client}, ${inFlight} in flight`, warmupMs + durationMs);
            const send =
              client === "sdk"
                ? (i: number) =>
                    producer
                      .send({
                        topic: TOPIC,
                        messageType: MESSAGE_TYPE,
                        body: benchBody(f["body-size"], nowMs(), i),
                      })
                      .then(() => undefined)
                : async (i: number) => {
                    const ack = await raw.publish(
                      buildHeader({ topic: TOPIC, messageType: MESSAGE_TYPE, groupId: PRODUCER_GROUP }),
                      benchBody(f["body-size"], nowMs(), i),
                    );
                    if (!ack.status) throw new Error(ack.feedback);
                  };
            runs.push(await measured(client, inFlight, warmupMs, durationMs, send));
            progress.end();
          }
        }
      } finally {
        raw.close();
        await producer.close();
        await cluster.stop();
      }
      if (env.interrupted) return 130;
      printTable(
        "one producer: store-acked sends per second, ack latency in ms",
        ["client", "in flight", "sends/s", "p50 ms", "p99 ms", "max ms", "failed"],
        runs.map((r) => [
          r.client,
          r.inFlight,
          r.sendsPerSec,
          r.latencyMs.p50,
          r.latencyMs.p99,
          r.latencyMs.max,
          r.failed,
        ]),
      );
      const file = await writeResult(
        resultPath(f.out, "sdk", timestamp(), "json"),
        `${JSON.stringify({ suite: "sdk", at: new Date().toISOString(), machine: await machineInfo(), flags: f, runs }, null, 2)}\n`,
      );
      console.log(`results: ${path.relative(process.cwd(), file)}`);
      return runs.some((r) => r.failed > 0) ? 1 : 0;
    });
  },
};

async function measured(
  client: "sdk" | "raw",
  inFlight: number,
  warmupMs: number,
  durationMs: number,
  send: (i: number) => Promise<void>,
): Promise<RunFigures> {
  const from = nowMs() + warmupMs;
  const to = from + durationMs;
  const latency = new Samples();
  const result = await flatOut(inFlight, to, async (_k, i) => {
    const sentAt = nowMs();
    await send(i);
    const at = nowMs();
    if (at >= from && at <= to) latency.add(at - sentAt);
  });
  return {
    client,
    inFlight,
    sendsPerSec: round(latency.count / (durationMs / 1000), 0),
    failed: result.failed,
    latencyMs: latency.summary(),
  };
}
