/**
 * `bench e2e`: publish -> deliver -> ack through one broker (child process) with 1, 4 and 8 bound
 * consumer groups (one consumer connection each, acking true at once): throughput flat out
 * (deliveries fully acked per second, history written: one message end to end per bound group;
 * a single group is capped by KiteQ's watermark, at most 6,000 msg/s per node, so the engine's
 * throughput shows with several groups), publish-to-deliver latency at a
 * fixed offered rate (from the scheduled send time carried in the body), and the claim query's
 * time over a large history (claim.ts). With `--nodes 1,2,3` the flat-out and fixed-rate runs go
 * once per node count: N brokers on the same PostgreSQL (nodes.ts), producers spread round-robin
 * over them and every group with one consumer connection on each node, so every node publishes
 * and delivers. With `--shards 1,2,4` every run goes once per shard count: that many embedded
 * PostgreSQL servers, the store sharded over them (one database each), the same load; the report
 * gives the throughput per shard count and where the CPU went (each broker, each PostgreSQL
 * server, the load generator) during the flat-out runs.
 */
import path from "node:path";
import type pg from "pg";
import type { KiteqConnection } from "../client/connection.js";
import type { EmbeddedPostgresServer } from "../store/embedded.js";
import { measureClaim } from "./claim.js";
import { CpuMeter, postmasterPid, processCpuSeconds, serverCpuSeconds } from "./cpu.js";
import { flatOut, paced } from "./drivers.js";
import { withEnv } from "./environment.js";
import { intList, parseSuiteFlags, UsageError } from "./flags.js";
import { benchConsumer, bindBenchGroup, closeAll, connectSpread, publishBench } from "./kiteq-load.js";
import {
  maxPeakRssKb,
  NODES_FLAG,
  type NodeRss,
  nodeCounts as parseNodeCounts,
  printPeakRss,
  startBrokerNodes,
} from "./nodes.js";
import { machineInfo, Progress, printTable, resultPath, timestamp, verdict, writeResult } from "./output.js";
import { type LatencySummary, nowMs, round, Samples, sleep } from "./stats.js";
import { COMMON_FLAGS, type Suite } from "./suite.js";

const FLAGS = {
  groups: {
    default: "1,4,8",
    help: "consumer group counts of the flat-out runs (one consumer connection per group and node)",
  },
  "rate-groups": {
    default: "1,4",
    help: "group counts that also get the fixed-rate latency run (a subset of --groups)",
  },
  connections: { default: 4, help: "producer connections (flat out)" },
  window: { default: 64, help: "publishes in flight per producer connection (flat out)" },
  seconds: { default: 10, help: "measured seconds of each run" },
  "warmup-seconds": { default: 2, help: "unmeasured seconds before each run" },
  rate: { default: 5000, help: "offered publishes per second of the latency run (0 skips it)" },
  "rate-connections": { default: 16, help: "producer connections of the latency run" },
  "drain-seconds": { default: 120, help: "longest wait for every delivery to be acked after a run" },
  flat: { default: 1, help: "1 runs the flat-out run, 0 skips it" },
  claim: { default: 1, help: "1 runs the claim measure, 0 skips it" },
  "history-messages": { default: 1_000_000, help: "messages of history behind the claim measure" },
  owed: { default: "1000,100000", help: "deliveries owed during the claim measure" },
  "claim-batch": { default: 500, help: "claim batch size" },
  "claim-repeats": { default: 40, help: "claims timed per owed size" },
  shards: {
    default: "",
    help: "shard counts, e.g. 1,2,4: a run per count on that many embedded PostgreSQL servers (default: one database, unsharded)",
  },
  ...NODES_FLAG,
  ...COMMON_FLAGS,
} as const;

/** Most shards one run starts (each an embedded PostgreSQL server). */
const MAX_SHARDS = 8;

const TARGET_FLAT_PER_SEC = 25_000;
const TARGET_P99_MS = 15;
/** Exit status of a run cut short by SIGINT/SIGTERM (withEnv exits with it anyway). */
const INTERRUPTED = 130;

/** Which sequence numbers a group has seen (a bitmap that grows). */
class SeqSet {
  private bits = new Uint8Array(1024);
  /** Mark `seq`; false if it was marked already. */
  mark(seq: number): boolean {
    if (!Number.isInteger(seq) || seq < 0) return true;
    const byte = seq >>> 3;
    if (byte >= this.bits.length) {
      const grown = new Uint8Array(Math.max(byte + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    const bit = 1 << (seq & 7);
    if ((this.bits[byte]! & bit) !== 0) return false;
    this.bits[byte]! |= bit;
    return true;
  }
}

/** Counts of one run: distinct messages per group, deliveries per node, duplicates. */
class Seen {
  readonly inWindow: number[];
  /** Distinct messages seen, per group. */
  readonly total: number[];
  /** Deliveries (duplicates too) through each node's consumer connections. */
  readonly byNode: number[];
  /** Deliveries of a message the group had seen already. */
  duplicates = 0;
  readonly latency = new Samples();
  private readonly seqs: SeqSet[];
  constructor(
    groups: number,
    nodes: number,
    private readonly window: { from: number; to: number },
    private readonly latencyFrom = Number.POSITIVE_INFINITY,
  ) {
    this.inWindow = new Array<number>(groups).fill(0);
    this.total = new Array<number>(groups).fill(0);
    this.byNode = new Array<number>(nodes).fill(0);
    this.seqs = Array.from({ length: groups }, () => new SeqSet());
  }
  add(g: number, node: number, seq: number, sentAt: number, seenAt: number): void {
    this.byNode[node]!++;
    if (!this.seqs[g]!.mark(seq)) {
      this.duplicates++;
      return;
    }
    this.total[g]!++;
    if (seenAt >= this.window.from && seenAt <= this.window.to) this.inWindow[g]!++;
    if (sentAt >= this.latencyFrom) this.latency.add(seenAt - sentAt);
  }
}

interface GroupRun {
  /** PostgreSQL servers the store was sharded over (1: one database). */
  shards: number;
  nodes: number;
  groups: number;
  /** Consumer connections of each group (one per node). */
  consumersPerGroup: number;
  flat: {
    publishedPerSec: number;
    /** Publishes acked in the measured window through each node's producers, per second. */
    publishedPerSecByNode: number[];
    ackedPerSecPerGroup: number[];
    minAckedPerSecPerGroup: number;
    deliveriesAckedPerSec: number;
    /** Deliveries not yet acked (rows in deliveries) when the producers stopped. */
    owedAtEnd: number;
    drainSeconds: number;
    /** Deliveries (whole run and drain) through each node's consumer connections. */
    deliveredByNode: number[];
    /** Deliveries of a message its group had already seen. */
    duplicates: number;
    failed: number;
    /** CPU seconds per process (broker-N, pg-N, bench) over the flat-out run (warm-up included). */
    cpu: { wallSeconds: number; cpuSeconds: Record<string, number> } | null;
  } | null;
  fixedRate: {
    offeredPerSec: number;
    deliverLatencyMs: LatencySummary;
    /** Publish to its store ack (same clock, from the scheduled send time). */
    storeAckLatencyMs: LatencySummary;
    /** How late the load generator sent (actual - scheduled): its own share of the latency. */
    sendLagMs: LatencySummary;
    drainSeconds: number;
    deliveredByNode: number[];
    duplicates: number;
    failed: number;
  } | null;
}

export const e2eSuite: Suite = {
  name: "e2e",
  // From the defaults: it said 1/4 groups (the fixed-rate run's) while the flat-out run took 1/4/8.
  summary: `publish -> deliver -> ack throughput with ${FLAGS.groups.default.replaceAll(",", "/")} groups and latency at a fixed rate with ${FLAGS["rate-groups"].default.replaceAll(",", "/")}; claim time over a large history`,
  flags: FLAGS,
  async run(argv) {
    const f = parseSuiteFlags(argv, FLAGS);
    const groupCounts = intList("groups", f.groups);
    const rateGroups = intList("rate-groups", f["rate-groups"]);
    const owed = intList("owed", f.owed);
    const counts = parseNodeCounts(f.nodes);
    const progress = new Progress();
    const stray = rateGroups.filter((g) => !groupCounts.includes(g));
    if (f.rate > 0 && stray.length > 0) {
      progress.note(
        `no fixed-rate run for ${stray.join(",")} group(s): --rate-groups must be among --groups (${groupCounts.join(",")})`,
      );
    }
    const shardCounts = f.shards === "" ? null : intList("shards", f.shards);
    if (shardCounts?.some((n) => n > MAX_SHARDS)) {
      throw new UsageError(`--shards: at most ${MAX_SHARDS} shards`);
    }
    return withEnv("e2e", { freshWal: f["fresh-wal"] === 1 }, async (env) => {
      const runs: GroupRun[] = [];
      const rss: NodeRss[] = [];
      const extraServers: EmbeddedPostgresServer[] = [];
      for (const shards of shardCounts ?? [1]) {
        if (env.interrupted) return INTERRUPTED;
        // The store: one database (no --shards, as before), or one database on each of `shards`
        // servers (the first is the environment's).
        const dbs: { url: string; pool: pg.Pool }[] = [];
        let servers: EmbeddedPostgresServer[] = [env.pg];
        if (shardCounts === null) {
          dbs.push(await env.kiteqDatabase("bench_e2e"));
        } else {
          while (extraServers.length < shards - 1) {
            extraServers.push(await env.extraServer(`shard${extraServers.length + 1}`));
          }
          servers = [env.pg, ...extraServers].slice(0, shards);
          for (const server of servers) dbs.push(await env.kiteqDatabase(`bench_e2e_s${shards}`, server));
          progress.note(`${shards} shard(s): PostgreSQL on port(s) ${servers.map((x) => x.port).join(", ")}`);
        }
        const pools = dbs.map((d) => d.pool);
        // Bindings live in shard 0.
        for (const g of groupCounts)
          for (let j = 0; j < g; j++) await bindBenchGroup(pools[0]!, groupId(g, j), topic(g));
        for (const nodes of counts) {
          if (env.interrupted) return INTERRUPTED;
          const cluster = await startBrokerNodes(env, {
            // Several URLs: one value separated by spaces (commas may be inside a URL).
            dbUrl: dbs.map((d) => d.url).join(" "),
            count: nodes,
            label: `broker-s${shards}`,
          });
          progress.note(
            `${nodes} broker node(s): pid ${cluster.brokers.map((b) => b.pid).join(", ")} on 127.0.0.1:${cluster.ports.join(", ")}`,
          );
          if (f.connections < nodes) {
            progress.note(
              `${f.connections} producer connection(s) on ${nodes} nodes: some nodes get no publishes`,
            );
          }
          const sources = new Map<string, () => number>();
          for (const [i, b] of cluster.brokers.entries()) {
            sources.set(`broker-${i + 1}`, () => processCpuSeconds(b.pid));
          }
          servers.forEach((server, i) => {
            const pid = postmasterPid(server.dataDir);
            if (pid !== undefined) sources.set(`pg-${i}`, () => serverCpuSeconds(pid));
          });
          sources.set("bench", () => {
            const u = process.cpuUsage();
            return (u.user + u.system) / 1e6;
          });
          const cpu = new CpuMeter(sources);
          // Every fixed-rate (latency) run first, on a system in steady state; then the flat-out
          // runs. A flat-out run leaves a backlog that the database goes on vacuuming for a while,
          // which is not what a steady producer at the fixed rate would see.
          const rated = new Map<number, GroupRun>();
          for (const g of groupCounts) {
            if (env.interrupted || f.rate <= 0 || !rateGroups.includes(g)) continue;
            rated.set(g, await runGroups(cluster.ports, pools, g, f, "rate", progress, cpu));
          }
          for (const g of groupCounts) {
            if (env.interrupted) break;
            const flat =
              f.flat > 0 ? await runGroups(cluster.ports, pools, g, f, "flat", progress, cpu) : undefined;
            const rate = rated.get(g);
            if (flat !== undefined) runs.push({ ...flat, fixedRate: rate?.fixedRate ?? null });
            else if (rate !== undefined) runs.push(rate);
          }
          rss.push(...cluster.peakRss());
          await cluster.stop();
        }
      }
      // Interrupted: the figures are cut short, nothing is reported.
      if (env.interrupted) return INTERRUPTED;
      const claim =
        f.claim > 0
          ? await measureClaim(
              env,
              {
                historyMessages: f["history-messages"],
                owed,
                batch: f["claim-batch"],
                repeats: f["claim-repeats"],
                bodySize: f["body-size"],
              },
              progress,
            )
          : null;
      if (env.interrupted) return INTERRUPTED;
      printReport(runs, claim);
      if (shardCounts !== null) printShardReport(runs);
      console.log("");
      printPeakRss(rss);
      const file = await writeResult(
        resultPath(f.out, "e2e", timestamp(), "json"),
        `${JSON.stringify(
          {
            suite: "e2e",
            at: new Date().toISOString(),
            machine: await machineInfo(),
            postgres: await env.describeSettings(),
            flags: f,
            targets: { flatDeliveriesAckedPerSec: TARGET_FLAT_PER_SEC, p99MsAtRate: TARGET_P99_MS },
            nodeCounts: counts,
            shardCounts: shardCounts ?? [1],
            runs,
            claim,
            brokers: rss,
            // The highest of all brokers' peak RSS.
            brokerPeakRssKb: maxPeakRssKb(rss),
          },
          null,
          2,
        )}\n`,
      );
      console.log(`results: ${path.relative(process.cwd(), file)}`);
      return runs.some((r) => (r.flat?.failed ?? 0) > 0 || (r.fixedRate?.failed ?? 0) > 0) ? 1 : 0;
    });
  },
};

const topic = (groups: number) => `bench-e2e-${groups}`;
const groupId = (groups: number, j: number) => `bench-e2e-${groups}-g${j}`;

type E2eFlags = ReturnType<typeof parseSuiteFlags<typeof FLAGS>>;

async function runGroups(
  ports: readonly number[],
  pools: readonly pg.Pool[],
  g: number,
  f: E2eFlags,
  phase: "rate" | "flat",
  progress: Progress,
  cpu: CpuMeter,
): Promise<GroupRun> {
  const nodes = ports.length;
  const shards = pools.length;
  const label = `e2e ${shards > 1 ? `${shards} shards, ` : ""}${nodes} node(s), ${g} group(s)`;
  let seen = new Seen(g, nodes, { from: 0, to: 0 });
  const consumers: KiteqConnection[] = [];
  try {
    for (let j = 0; j < g; j++) {
      for (const [node, port] of ports.entries()) {
        consumers.push(
          await benchConsumer(port, groupId(g, j), (seq, sentAt, at) => seen.add(j, node, seq, sentAt, at)),
        );
      }
    }
    const warmupMs = f["warmup-seconds"] * 1000;
    const durationMs = f.seconds * 1000;
    let fixedRate: GroupRun["fixedRate"] = null;
    if (phase === "rate") {
      // Fixed offered rate: latency from the scheduled send time, after the warm-up.
      const rateProducers = await connectSpread(ports, f["rate-connections"]);
      const rateStart = nowMs();
      seen = new Seen(g, nodes, { from: 0, to: 0 }, rateStart + warmupMs);
      let sent = 0;
      const ackLatency = new Samples();
      const sendLag = new Samples();
      progress.timed(`${label}, ${f.rate}/s offered`, warmupMs + durationMs);
      const fixed = await paced(f.rate, warmupMs + durationMs, async (i, at) => {
        if (at >= rateStart + warmupMs) sendLag.add(nowMs() - at);
        await publishBench(rateProducers[i % rateProducers.length]!, topic(g), f["body-size"], at, i);
        if (at >= rateStart + warmupMs) ackLatency.add(nowMs() - at);
        sent++;
      }).finally(() => {
        progress.end();
        closeAll(rateProducers);
      });
      const rateDrain = await drain(pools, seen, sent, f["drain-seconds"], progress, label);
      fixedRate = {
        offeredPerSec: f.rate,
        deliverLatencyMs: seen.latency.summary(),
        storeAckLatencyMs: ackLatency.summary(),
        sendLagMs: sendLag.summary(),
        drainSeconds: rateDrain,
        deliveredByNode: [...seen.byNode],
        duplicates: seen.duplicates,
        failed: fixed.failed + (rateDrain < 0 ? 1 : 0),
      };
    }

    if (phase === "rate")
      return { shards, nodes, groups: g, consumersPerGroup: nodes, flat: null, fixedRate };
    // Flat out.
    const from = nowMs() + warmupMs;
    const window = { from, to: from + durationMs };
    seen = new Seen(g, nodes, window);
    const producers = await connectSpread(ports, f.connections);
    let published = 0;
    let publishedInWindow = 0;
    const publishedByNode = new Array<number>(nodes).fill(0);
    progress.timed(`${label}, flat out`, warmupMs + durationMs);
    cpu.begin();
    const flat = await flatOut(f.connections * f.window, window.to, async (k, i) => {
      // Producer connection c is on node c mod nodes (connectSpread).
      await publishBench(producers[k % producers.length]!, topic(g), f["body-size"], nowMs(), i);
      published++;
      const at = nowMs();
      if (at >= window.from && at <= window.to) {
        publishedInWindow++;
        publishedByNode[(k % producers.length) % nodes]!++;
      }
    }).finally(() => {
      progress.end();
      closeAll(producers);
    });
    const cpuUsed = cpu.end();
    const owedAtEnd = await owedDeliveries(pools);
    const flatDrain = await drain(pools, seen, published, f["drain-seconds"], progress, label);
    const perGroup = seen.inWindow.map((n) => round(n / (durationMs / 1000), 0));
    const flatFigures = {
      publishedPerSec: round(publishedInWindow / (durationMs / 1000), 0),
      publishedPerSecByNode: publishedByNode.map((n) => round(n / (durationMs / 1000), 0)),
      ackedPerSecPerGroup: perGroup,
      minAckedPerSecPerGroup: Math.min(...perGroup),
      deliveriesAckedPerSec: perGroup.reduce((a, b) => a + b, 0),
      owedAtEnd,
      drainSeconds: flatDrain,
      deliveredByNode: [...seen.byNode],
      duplicates: seen.duplicates,
      failed: flat.failed + (flatDrain < 0 ? 1 : 0),
      cpu: cpuUsed,
    };
    return { shards, nodes, groups: g, consumersPerGroup: nodes, flat: flatFigures, fixedRate };
  } finally {
    closeAll(consumers);
  }
}

/**
 * Wait until every group saw `published` messages and no delivery is owed any more (every ack and
 * its history rows written); seconds waited, or -1 after `limitSeconds`.
 */
async function drain(
  pools: readonly pg.Pool[],
  seen: Seen,
  published: number,
  limitSeconds: number,
  progress: Progress,
  label: string,
): Promise<number> {
  const start = nowMs();
  const deadline = start + limitSeconds * 1000;
  progress.track(`${label}: draining`, published, () => Math.min(...seen.total));
  try {
    while (nowMs() < deadline) {
      if (seen.total.every((n) => n >= published)) {
        if ((await owedDeliveries(pools)) === 0) return round((nowMs() - start) / 1000, 2);
      }
      await sleep(50);
    }
  } finally {
    progress.end();
  }
  progress.note(
    `${label}: not drained within ${limitSeconds}s (seen ${seen.total.join("/")} of ${published})`,
  );
  return -1;
}

/** Rows in deliveries, over every shard: what is still owed to some group (bench fixture query). */
async function owedDeliveries(pools: readonly pg.Pool[]): Promise<number> {
  let owed = 0;
  for (const pool of pools) {
    const { rows } = await pool.query<{ owed: number }>("SELECT count(*)::int AS owed FROM deliveries");
    owed += rows[0]?.owed ?? 0;
  }
  return owed;
}

/** Throughput per shard count, and the CPU seconds of each process over each flat-out run. */
function printShardReport(runs: GroupRun[]): void {
  const flatRuns = runs.flatMap((r) => (r.flat ? [{ ...r, flat: r.flat }] : []));
  if (flatRuns.length === 0) return;
  printTable(
    "e2e by shard count, flat out (deliveries acked per second; CPU: share of one core over the run, warm-up included)",
    [
      "shards",
      "nodes",
      "groups",
      "published/s",
      "deliveries acked/s",
      "brokers",
      "postgres (each)",
      "bench",
      "total",
    ],
    flatRuns.map((r) => {
      const c = r.flat.cpu;
      const share = (k: string) =>
        c === null ? "?" : `${Math.round(((c.cpuSeconds[k] ?? 0) / c.wallSeconds) * 100)}%`;
      const keys = c === null ? [] : Object.keys(c.cpuSeconds);
      const total =
        c === null
          ? "?"
          : `${Math.round((Object.values(c.cpuSeconds).reduce((a, b) => a + b, 0) / c.wallSeconds) * 100)}%`;
      return [
        r.shards,
        r.nodes,
        r.groups,
        r.flat.publishedPerSec,
        r.flat.deliveriesAckedPerSec,
        keys
          .filter((k) => k.startsWith("broker-"))
          .map(share)
          .join(" + "),
        keys
          .filter((k) => k.startsWith("pg-"))
          .map(share)
          .join(" + "),
        share("bench"),
        total,
      ];
    }),
  );
}

function printReport(runs: GroupRun[], claim: Awaited<ReturnType<typeof measureClaim>> | null): void {
  const flatRuns = runs.flatMap((r) => (r.flat ? [{ ...r, flat: r.flat }] : []));
  if (flatRuns.length > 0)
    printTable(
      "e2e, flat out (deliveries fully acked per second: one per message and bound group; a group is capped at its watermark, at most 6,000/s per node)",
      [
        "nodes",
        "groups",
        "published/s",
        "acked/s/group (min)",
        "deliveries acked/s",
        "owed at end",
        "drain s",
        "dups",
        "failed",
        "target",
      ],
      flatRuns.map((r) => [
        r.nodes,
        r.groups,
        r.flat.publishedPerSec,
        r.flat.minAckedPerSecPerGroup,
        r.flat.deliveriesAckedPerSec,
        r.flat.owedAtEnd,
        r.flat.drainSeconds,
        r.flat.duplicates,
        r.flat.failed,
        `>= ${TARGET_FLAT_PER_SEC.toLocaleString("en-US")}/s ${verdict(r.flat.deliveriesAckedPerSec >= TARGET_FLAT_PER_SEC)}`,
      ]),
    );
  const rated = runs.filter((r) => r.fixedRate !== null);
  if (rated.length > 0) {
    printTable(
      "e2e, fixed offered rate (publish-to-deliver latency from the scheduled send time, ms)",
      [
        "nodes",
        "groups",
        "offered/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "store ack p99",
        "sender lag p99",
        "samples",
        "dups",
        "failed",
        "target",
      ],
      rated.map((r) => {
        const x = r.fixedRate!;
        return [
          r.nodes,
          r.groups,
          x.offeredPerSec,
          x.deliverLatencyMs.p50,
          x.deliverLatencyMs.p99,
          x.deliverLatencyMs.max,
          x.storeAckLatencyMs.p99,
          x.sendLagMs.p99,
          x.deliverLatencyMs.count,
          x.duplicates,
          x.failed,
          `p99 <= ${TARGET_P99_MS} ms ${verdict(x.deliverLatencyMs.p99 <= TARGET_P99_MS)}`,
        ];
      }),
    );
  }
  if (claim) {
    printTable(
      `claimDueDeliveries over ${claim.historyMessages.toLocaleString("en-US")} messages / ${claim.historyEventRows.toLocaleString("en-US")} event rows of history (ms per claim)`,
      ["owed", "batch", "rows/claim", "p50 ms", "p99 ms", "mean ms", "max ms"],
      claim.sizes.map((s) => [
        s.owed,
        s.batch,
        s.rowsPerClaim,
        s.claimMs.p50,
        s.claimMs.p99,
        s.claimMs.mean,
        s.claimMs.max,
      ]),
    );
    console.log(
      `claim p50 ratio largest/smallest owed: ${claim.p50Ratio} (about 1 = flat); history written in ${claim.fillSeconds}s`,
    );
  }
}
