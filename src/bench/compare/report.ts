/**
 * The compare suite's output on the terminal (tables: rows and their caps, throughput, latency,
 * exactly-once per phase, footprint with what each figure covers, kiteq-pg's advantage over each
 * peer, the acceptance checks) and the data of its SVG chart.
 */
import { fmt, mib, printTable, verdict } from "../output.js";
import { compareChart } from "./chart.js";
import type { CpuPerMessage, SystemResult } from "./phases.js";
import type { AcceptanceCheck, Advantage, AdvantageTable, RoundsCheck } from "./ratios.js";
import { countsCell } from "./tracker.js";

/** Column labels of the two flat-out forms ("16x1", "64 in flight"). */
export interface PhaseLabels {
  awaited: string;
  pipelined: string;
}

/** A figure for a table cell: "-" when missing; numbers are formatted (and right-aligned) by printTable. */
const dash = (v: number | null | undefined, f?: (n: number) => string): string | number =>
  v === null || v === undefined ? "-" : f ? f(v) : v;

const times = (v: number | null) => (v === null ? "-" : `${v}x`);

/** "41.2 (db 25.0 + sys 12.1 + bench 4.1)". */
function cpuCell(c: CpuPerMessage | null | undefined): string {
  if (c === null || c === undefined) return "-";
  return `${c.total} (db ${c.database} + sys ${c.system} + bench ${c.bench})`;
}

/** "broker 121 + consumer 58". */
function rssParts(r: SystemResult): string {
  return r.footprint.processes
    .map((p) => `${p.role} ${p.peakRssKb === null ? "?" : fmt(Math.round(p.peakRssKb / 1024))}`)
    .join(" + ");
}

/** Print every table; `caveats` are the engines lines. */
export function printCompare(
  results: readonly SystemResult[],
  advantages: readonly AdvantageTable[],
  acceptance: readonly AcceptanceCheck[],
  labels: PhaseLabels,
  caveats: readonly string[],
): void {
  printTable(
    "compare: rows, the release each runs and every cap it runs under",
    ["system", "release", "caps"],
    results.map((r) => [r.name, r.version, r.caps]),
  );
  for (const c of caveats) console.log(c);

  printTable(
    "compare: throughput, messages/s (flat and steady: handled within the measuring window)",
    [
      "system",
      "burn-down fill",
      "burn-down consume",
      `${labels.awaited} enqueued`,
      `${labels.awaited} handled`,
      `${labels.pipelined} enqueued`,
      `${labels.pipelined} handled`,
      "steady offered",
      "steady handled",
      "steady carried",
    ],
    results.map((r) => [
      r.name,
      dash(r.burnDown?.fillPerSec),
      dash(r.burnDown?.throughputPerSec),
      dash(r.flatAwaited?.enqueuedPerSec),
      dash(r.flatAwaited?.throughputPerSec),
      dash(r.flatPipelined?.enqueuedPerSec),
      dash(r.flatPipelined?.throughputPerSec),
      dash(r.steady?.offeredPerSec),
      dash(r.steady?.throughputPerSec),
      r.steady ? (r.steady.carried ? "yes" : "NO") : "-",
    ]),
  );
  for (const r of results) {
    if (r.warmUp)
      console.log(
        `  warm-up, ${r.name}: an untimed burn-down of ${fmt(r.warmUp.messages)} before the measured one ` +
          `(${r.warmUp.seconds} s; the consumer then paused, its process kept)`,
      );
  }
  for (const r of results) {
    if (r.burnDown) console.log(`  burn-down fill, ${r.name}: ${r.burnDown.fill}`);
  }
  for (const r of results) {
    if (r.steady)
      console.log(`  steady rate, ${r.name}: ${fmt(r.steady.offeredPerSec)}/s = ${r.steady.rule}`);
  }

  printTable(
    "compare: latency, ms, from the start of the enqueue call (steady: its scheduled time) to the handler call",
    [
      "system",
      `${labels.awaited} p50`,
      `${labels.awaited} p99`,
      `${labels.pipelined} p50`,
      `${labels.pipelined} p99`,
      "steady p50",
      "steady p95",
      "steady p99",
    ],
    results.map((r) => [
      r.name,
      dash(r.flatAwaited?.latencyMs.p50),
      dash(r.flatAwaited?.latencyMs.p99),
      dash(r.flatPipelined?.latencyMs.p50),
      dash(r.flatPipelined?.latencyMs.p99),
      dash(r.steady?.latencyMs.p50),
      dash(r.steady?.latencyMs.p95),
      dash(r.steady?.latencyMs.p99),
    ]),
  );

  printTable(
    "compare: CPU per message handled, us (PostgreSQL server + the row's own processes + the bench " +
      "process, which runs every row's producers; from /proc over the consume part and the measuring window)",
    ["system", "burn-down consume", `${labels.awaited}`, `${labels.pipelined}`],
    results.map((r) => [
      r.name,
      cpuCell(r.burnDown?.cpu),
      cpuCell(r.flatAwaited?.cpu),
      cpuCell(r.flatPipelined?.cpu),
    ]),
  );
  console.log(
    "  the row's own processes: " +
      results
        .map((r) => `${r.name}: ${r.footprint.processes.map((p) => p.role).join(" + ") || "-"}`)
        .join("; "),
  );

  printTable(
    "compare: exactly once, every phase (handled/sent; duplicates and losses are failures)",
    ["system", "warm-up", "burn-down", labels.awaited, labels.pipelined, "steady", "duplicates", "lost"],
    results.map((r) => [
      r.name,
      r.warmUp ? countsCell(r.warmUp.counts) : "-",
      r.burnDown ? countsCell(r.burnDown.counts) : "-",
      r.flatAwaited ? countsCell(r.flatAwaited.counts) : "-",
      r.flatPipelined ? countsCell(r.flatPipelined.counts) : "-",
      r.steady ? countsCell(r.steady.counts) : "-",
      r.duplicates,
      r.missing,
    ]),
  );

  printTable(
    "compare: footprint after the run (RSS: peak of the processes each system adds beside PostgreSQL " +
      "and the producing application, whose producers run in the bench process for every row)",
    ["system", "database MiB", "what the database keeps", "peak RSS MiB", "RSS of (MiB)"],
    results.map((r) => [
      r.name,
      dash(r.footprint.databaseBytes === null ? null : mib(r.footprint.databaseBytes)),
      r.footprint.retention,
      dash(r.footprint.peakRssKb === null ? null : Math.round(r.footprint.peakRssKb / 1024)),
      `${r.footprint.rssOf}: ${rssParts(r)}`,
    ]),
  );

  for (const t of advantages) {
    printTable(
      `compare: ${t.baseline} (${t.caps}) vs each peer, times better ` +
        "(> 1 = kiteq-pg better; throughput: its / the peer's; latency, CPU per message, database, RSS: the peer's / its)",
      [
        "peer",
        "burn-down",
        labels.awaited,
        `${labels.awaited} p99`,
        labels.pipelined,
        `${labels.pipelined} p99`,
        "steady p50*",
        "steady p99*",
        "CPU/msg burn-down",
        `CPU/msg ${labels.awaited}`,
        "database**",
        "RSS",
      ],
      t.peers.map((p) => advantageRow(p.name, p.advantage)),
    );
  }
  if (advantages.length > 0) {
    console.log("  * steady: each row at its own rate (see 'steady rate' above), not one common rate");
    console.log("  ** database: different retention models (see 'what the database keeps')");
  }

  printTable(
    "compare: acceptance",
    ["check", "measured", "verdict"],
    acceptance.map((a) => [a.check, a.value, a.ok === null ? "not measured" : verdict(a.ok)]),
  );

  console.log("\nsettings:");
  for (const r of results) {
    console.log(
      `  ${r.name}: ${Object.entries(r.settings)
        .map(([k, v]) => `${k}=${v}`)
        .join("; ")}`,
    );
  }
}

/** The acceptance checks over every round: each round's value, the median and its verdict. */
export function printRounds(checks: readonly RoundsCheck[], rounds: number): void {
  printTable(
    `compare: acceptance over ${rounds} rounds (the median of the rounds' values; exactly-once: every round)`,
    ["check", ...Array.from({ length: rounds }, (_, i) => `round ${i + 1}`), "median", "verdict"],
    checks.map((c) => [
      c.check,
      ...c.rounds,
      c.median === null ? "-" : fmt(c.median),
      c.ok === null ? "not measured" : verdict(c.ok),
    ]),
  );
}

function advantageRow(name: string, a: Advantage): (string | number)[] {
  return [
    name,
    times(a.burnDown),
    times(a.flatAwaited),
    times(a.flatAwaitedP99),
    times(a.flatPipelined),
    times(a.flatPipelinedP99),
    times(a.steadyP50),
    times(a.steadyP99),
    times(a.burnDownCpu),
    times(a.flatAwaitedCpu),
    times(a.databaseBytes),
    times(a.peakRss),
  ];
}

/** The SVG chart of the results; the legend gives each row's caps, `notes` go under it. */
export function chartOf(
  results: readonly SystemResult[],
  labels: PhaseLabels,
  subtitle: string,
  notes: readonly string[],
): string {
  return compareChart({
    title: "kiteq-pg vs pg-boss vs graphile-worker (same PostgreSQL, exactly-once checked in every phase)",
    subtitle,
    legend: results.map((r) => `${r.name} (${r.version}): ${r.caps}`),
    notes: [...notes],
    throughput: {
      groups: [
        "burn-down consume",
        `flat ${labels.awaited}`,
        `flat ${labels.pipelined}`,
        "steady (own rate)",
      ],
      series: results.map((r) => ({
        name: r.name,
        values: [
          r.burnDown?.throughputPerSec ?? null,
          r.flatAwaited?.throughputPerSec ?? null,
          r.flatPipelined?.throughputPerSec ?? null,
          r.steady?.throughputPerSec ?? null,
        ],
      })),
    },
    latency: {
      groups: [
        `${labels.awaited} p50`,
        `${labels.awaited} p99`,
        `${labels.pipelined} p99`,
        "steady p50",
        "steady p99",
      ],
      series: results.map((r) => ({
        name: r.name,
        values: [
          r.flatAwaited?.latencyMs.p50 ?? null,
          r.flatAwaited?.latencyMs.p99 ?? null,
          r.flatPipelined?.latencyMs.p99 ?? null,
          r.steady?.latencyMs.p50 ?? null,
          r.steady?.latencyMs.p99 ?? null,
        ],
      })),
    },
  });
}
