/**
 * `npm run bench -- takeover`: how long a crashed node's deliveries wait (issue 13).
 *
 * Each run: two fresh broker processes on one PostgreSQL (lease 30 s; in ZooKeeper mode also a
 * 30 s session), a consumer on node A that never answers (so A holds every delivery in flight),
 * --messages published and acked, a consumer of the same group on node B; then kill -9 of A and
 * the time until B pushes the first of A's messages, and until B has pushed them all. The start
 * order alternates, so half the runs kill the maintenance node. Every acked message must arrive;
 * duplicates (a message pushed twice on B) are counted. Verdict: p99 of the first redelivery
 * under 1 s in each mode.
 */
import { directBinding } from "../binding/binding.js";
import { buildHeader, KiteqConnection } from "../client/connection.js";
import { upsertBinding } from "../store/bindings.js";
import { type BrokerChild, startBrokerChild } from "./broker-child.js";
import { withEnv } from "./environment.js";
import { parseSuiteFlags } from "./flags.js";
import { fmt, printTable, resultPath, timestamp, verdict, writeResult } from "./output.js";
import { quantile } from "./stats.js";
import { COMMON_FLAGS, type Suite } from "./suite.js";
import { startZooKeeper, type TestZooKeeper } from "./zookeeper-server.js";

const FLAGS = {
  runs: { default: 20, help: "kill -9 runs per mode" },
  messages: { default: 200, help: "deliveries in flight on the killed node" },
  modes: { default: "static,zookeeper", help: "registry modes: static, zookeeper or both" },
  out: COMMON_FLAGS.out,
  "fresh-wal": COMMON_FLAGS["fresh-wal"],
} as const;

const TOPIC = "takeover";

interface RunResult {
  mode: string;
  run: number;
  killedLeader: boolean;
  firstMs: number;
  allMs: number;
  /** Messages published and acked (all held by the killed node). */
  acked: number;
  delivered: number;
  duplicates: number;
}

export const takeoverSuite: Suite = {
  name: "takeover",
  summary: "kill -9 of a node holding deliveries: time to the first and last redelivery (issue 13)",
  flags: FLAGS,
  async run(argv) {
    const flags = parseSuiteFlags(argv, FLAGS);
    const modes = flags.modes.split(",").map((m) => m.trim());
    const results = await withEnv("takeover", { freshWal: flags["fresh-wal"] === 1 }, async (env) => {
      const { url, pool } = await env.kiteqDatabase("takeover");
      let zk: TestZooKeeper | undefined;
      if (modes.includes("zookeeper")) {
        zk = await startZooKeeper();
        env.defer(() => zk?.stop());
      }
      const out: RunResult[] = [];
      for (const mode of modes) {
        for (let run = 1; run <= flags.runs; run++) {
          const group = `g-${mode}-${run}`;
          const messageType = `m-${mode}-${run}`;
          await upsertBinding(pool, directBinding(group, TOPIC, messageType, 6000, true), "cli", new Date());
          const registry =
            mode === "zookeeper"
              ? ["--registry", `zk://${zk!.connectString}`, "--topics", TOPIC]
              : ["--registry", "static"];
          const args = [
            ...registry,
            "--lease-seconds",
            "30",
            "--delivery-seconds",
            "30",
            "--recover-seconds",
            "10",
          ];
          const names = run % 2 === 0 ? (["a", "b"] as const) : (["b", "a"] as const);
          const started: Record<string, BrokerChild> = {};
          for (const n of names) {
            started[n] = await startBrokerChild({
              dbUrl: url,
              dataDir: `${env.dir}/tk-${mode}-${run}-${n}`,
              extraArgs: [...args, "--node-id", `${mode}-${run}-${n}`],
            });
          }
          const a = started.a!;
          const b = started.b!;
          // The node started first takes the maintenance lock: even runs kill it.
          const killedLeader = names[0] === "a";
          out.push(await oneRun(mode, run, killedLeader, a, b, group, messageType, flags.messages));
          await b.stop();
          const r = out[out.length - 1]!;
          process.stderr.write(
            `takeover ${mode} run ${run}: first ${r.firstMs} ms, all ${r.allMs} ms, duplicates ${r.duplicates}${r.killedLeader ? " (maintenance node killed)" : ""}\n`,
          );
        }
      }
      return { runs: out, settings: await env.describeSettings() };
    });
    return report(results.runs, modes, results.settings, flags.out);
  },
};

async function oneRun(
  mode: string,
  run: number,
  killedLeader: boolean,
  a: BrokerChild,
  b: BrokerChild,
  group: string,
  messageType: string,
  count: number,
): Promise<RunResult> {
  const conns: KiteqConnection[] = [];
  try {
    const holder = await KiteqConnection.connect({
      host: a.host,
      port: a.port,
      groupId: group,
      heartbeatMs: 0,
    });
    conns.push(holder);
    let held = 0;
    holder.onMessage(() => {
      held++;
      return new Promise<boolean>(() => undefined);
    });
    const producer = await KiteqConnection.connect({ host: a.host, port: a.port, groupId: "producer" });
    conns.push(producer);
    const acked = new Set<string>();
    for (let i = 0; i < count; i++) {
      const h = buildHeader({ topic: TOPIC, messageType, groupId: "producer" });
      const ack = await producer.publish(h, "x");
      if (ack.status) acked.add(h.messageId);
    }
    await until(() => held >= count, 20_000, "the killed node holds every delivery");
    const taker = await KiteqConnection.connect({
      host: b.host,
      port: b.port,
      groupId: group,
      heartbeatMs: 0,
    });
    conns.push(taker);
    const seen = new Map<string, number>();
    let firstAt = 0;
    let allAt = 0;
    taker.onMessage((m) => {
      const now = performance.now();
      if (firstAt === 0) firstAt = now;
      seen.set(m.header.messageId, (seen.get(m.header.messageId) ?? 0) + 1);
      if (allAt === 0 && [...acked].every((id) => seen.has(id))) allAt = now;
      return true;
    });
    await sleep(200);
    const killedAt = performance.now();
    await a.kill();
    await until(() => allAt > 0, 90_000, "every acked message redelivered on the other node");
    let duplicates = 0;
    for (const n of seen.values()) duplicates += n - 1;
    return {
      mode,
      run,
      killedLeader,
      firstMs: Math.round(firstAt - killedAt),
      allMs: Math.round(allAt - killedAt),
      acked: acked.size,
      delivered: [...acked].filter((id) => seen.has(id)).length,
      duplicates,
    };
  } finally {
    for (const c of conns) c.close();
  }
}

async function report(
  runs: RunResult[],
  modes: string[],
  settings: Record<string, string>,
  out: string,
): Promise<number> {
  const rows: (string | number)[][] = [];
  const failures: string[] = [];
  for (const mode of modes) {
    const of = runs.filter((r) => r.mode === mode);
    const first = Float64Array.from(of.map((r) => r.firstMs)).sort();
    const all = Float64Array.from(of.map((r) => r.allMs)).sort();
    const p99 = quantile(first, 0.99);
    const complete = of.every((r) => r.acked > 0 && r.delivered === r.acked);
    const ok = p99 < 1000 && complete;
    if (!ok) failures.push(`${mode}: first redelivery p99 ${p99} ms${complete ? "" : ", messages missing"}`);
    rows.push([
      mode,
      of.length,
      quantile(first, 0.5),
      `${fmt(p99)} ${verdict(ok)}`,
      quantile(all, 0.5),
      quantile(all, 0.99),
      of.reduce((n, r) => n + r.duplicates, 0),
      of.filter((r) => r.killedLeader).length,
    ]);
  }
  printTable(
    "kill -9 of a node holding deliveries (lease 30 s, ZooKeeper session 30 s): time to redelivery on the other node",
    [
      "mode",
      "runs",
      "first p50 ms",
      "first p99 ms (< 1,000)",
      "all p50 ms",
      "all p99 ms",
      "duplicates",
      "maintenance node killed",
    ],
    rows,
  );
  const ok = failures.length === 0;
  console.log(`\nverdict: ${ok ? "PASS" : "FAIL"}${ok ? "" : `\n  ${failures.join("\n  ")}`}`);
  const file = await writeResult(
    resultPath(out, "takeover", timestamp(), "json"),
    `${JSON.stringify({ suite: "takeover", at: new Date().toISOString(), settings, runs, verdict: ok }, null, 2)}\n`,
  );
  console.log(`results: ${file}`);
  return ok ? 0 : 1;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(5);
  }
}
