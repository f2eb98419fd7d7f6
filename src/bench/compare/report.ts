/**
 * The compare suite's output: tables with each peer's ratio to kiteq-pg, the JSON document and
 * the SVG chart.
 */
import { fmt, mib, printTable } from "../output.js";
import { round } from "../stats.js";
import { compareChart } from "./chart.js";
import type { SystemResult } from "./phases.js";

const BASELINE = "kiteq-pg";

/** Peer / kiteq-pg for each headline figure (null when either is missing). */
export type Ratios = Record<string, number | null>;

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return null;
  return round(a / b, 2);
}

/** Each system's headline figures over kiteq-pg's. */
export function ratiosToBaseline(results: SystemResult[]): Record<string, Ratios> {
  const base = results.find((r) => r.name === BASELINE);
  const out: Record<string, Ratios> = {};
  if (!base) return out;
  for (const r of results) {
    if (r === base) continue;
    out[r.name] = {
      burnDownThroughput: ratio(r.burnDown?.throughputPerSec, base.burnDown?.throughputPerSec),
      flatThroughput: ratio(r.flat?.throughputPerSec, base.flat?.throughputPerSec),
      steadyP50: ratio(r.steady?.latencyMs.p50, base.steady?.latencyMs.p50),
      steadyP99: ratio(r.steady?.latencyMs.p99, base.steady?.latencyMs.p99),
      flatP99: ratio(r.flat?.latencyMs.p99, base.flat?.latencyMs.p99),
      databaseBytes: ratio(r.databaseBytes, base.databaseBytes),
      peakRss: ratio(r.peakRssKb, base.peakRssKb),
    };
  }
  return out;
}

const dash = (v: number | null | undefined, f: (n: number) => string | number = (n) => n) =>
  v === null || v === undefined ? "-" : f(v);

/** Print the result tables. */
export function printCompare(results: SystemResult[], ratios: Record<string, Ratios>, rate: number): void {
  printTable(
    "compare: throughput (messages handled per second)",
    [
      "system",
      "burn-down fill/s",
      "burn-down consume/s",
      "steady handled/s",
      "flat enqueued/s",
      "flat handled/s",
      "flat backlog",
    ],
    results.map((r) => [
      r.name,
      dash(r.burnDown?.fillPerSec, fmt),
      dash(r.burnDown?.throughputPerSec, fmt),
      dash(r.steady?.throughputPerSec, fmt),
      dash(r.flat?.enqueuedPerSec, fmt),
      dash(r.flat?.throughputPerSec, fmt),
      dash(r.flat?.backlogAtEnd, fmt),
    ]),
  );
  printTable(
    `compare: enqueue-to-handler latency, ms (steady: ${rate}/s offered, from the scheduled send time)`,
    ["system", "steady p50", "steady p95", "steady p99", "flat p50", "flat p95", "flat p99"],
    results.map((r) => [
      r.name,
      dash(r.steady?.latencyMs.p50, fmt),
      dash(r.steady?.latencyMs.p95, fmt),
      dash(r.steady?.latencyMs.p99, fmt),
      dash(r.flat?.latencyMs.p50, fmt),
      dash(r.flat?.latencyMs.p95, fmt),
      dash(r.flat?.latencyMs.p99, fmt),
    ]),
  );
  printTable(
    "compare: footprint after the run",
    ["system", "database MiB", "peak RSS MiB", "RSS of", "exactly once (burn-down)"],
    results.map((r) => [
      r.name,
      dash(r.databaseBytes, (b) => fmt(mib(b))),
      dash(r.peakRssKb, (k) => fmt(Math.round(k / 1024))),
      r.rssOf,
      r.burnDown === null
        ? "-"
        : `${r.burnDown.counts.handled}/${r.burnDown.counts.sent} handled, ${r.burnDown.counts.duplicates} dup`,
    ]),
  );
  const names = Object.keys(ratios);
  if (names.length > 0) {
    printTable(
      `compare: ratio to ${BASELINE} (peer / ${BASELINE}; throughput > 1 = peer faster, latency/size/RSS > 1 = peer larger)`,
      ["system", "burn-down", "flat", "steady p50", "steady p99", "flat p99", "database", "peak RSS"],
      names.map((n) => {
        const x = ratios[n]!;
        const c = (v: number | null) => (v === null ? "-" : `${v}x`);
        return [
          n,
          c(x.burnDownThroughput!),
          c(x.flatThroughput!),
          c(x.steadyP50!),
          c(x.steadyP99!),
          c(x.flatP99!),
          c(x.databaseBytes!),
          c(x.peakRss!),
        ];
      }),
    );
  }
  console.log("\nsettings:");
  for (const r of results) {
    console.log(
      `  ${r.name}: ${Object.entries(r.settings)
        .map(([k, v]) => `${k}=${v}`)
        .join("; ")}`,
    );
  }
}

/** The SVG chart of the results. */
export function chartOf(results: SystemResult[], subtitle: string): string {
  return compareChart({
    title: "kiteq-pg vs pg-boss vs graphile-worker (same PostgreSQL)",
    subtitle,
    throughput: {
      groups: ["burn-down consume", "flat out handled"],
      series: results.map((r) => ({
        name: r.name,
        values: [r.burnDown?.throughputPerSec ?? null, r.flat?.throughputPerSec ?? null],
      })),
    },
    latency: {
      groups: ["steady p50", "steady p95", "steady p99", "flat p50", "flat p99"],
      series: results.map((r) => ({
        name: r.name,
        values: [
          r.steady?.latencyMs.p50 ?? null,
          r.steady?.latencyMs.p95 ?? null,
          r.steady?.latencyMs.p99 ?? null,
          r.flat?.latencyMs.p50 ?? null,
          r.flat?.latencyMs.p99 ?? null,
        ],
      })),
    },
  });
}
