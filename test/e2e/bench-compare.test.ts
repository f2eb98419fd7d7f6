/**
 * A short `npm run bench -- compare` as a test: every system runs every phase on the bench's own
 * embedded PostgreSQL, every message reaches a handler exactly once in burn-down, the JSON and
 * the SVG are written, and the bench cleans up its temp dir. Correctness only, never speed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { builtEntry } from "../support/built-src.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const SYSTEMS = [
  "kiteq-pg-uncapped",
  "kiteq-pg",
  "pg-boss (NOTIFY)",
  "pg-boss (poll 0.5 s)",
  "graphile-worker",
];
const PEERS = SYSTEMS.filter((s) => !s.startsWith("kiteq-pg"));
const MESSAGES = 300;
const WARMUP = 100;
/** The short phases both runs use: steady at a rate every system carries, a second of each. */
const SHORT_PHASES = [
  "--rate",
  "100",
  "--steady-seconds",
  "1",
  "--flat-seconds",
  "1",
  "--warmup-seconds",
  "0",
];

interface Counts {
  sent: number;
  handled: number;
  duplicates: number;
  missing: number;
  enqueueFailed: number;
}

interface Cpu {
  database: number;
  system: number;
  bench: number;
  total: number;
}

interface Result {
  name: string;
  version: string;
  caps: string;
  failures: string[];
  duplicates: number;
  missing: number;
  warmUp: { messages: number; counts: Counts } | null;
  burnDown: { counts: Counts; throughputPerSec: number; cpu: Cpu | null } | null;
  steady: { counts: Counts } | null;
  flatAwaited: { counts: Counts; cpu: Cpu | null } | null;
  flatPipelined: { counts: Counts } | null;
  footprint: { databaseBytes: number | null; retention: string; peakRssKb: number | null };
  settings: Record<string, string | number | boolean>;
}

let child: ChildProcess | undefined;

afterEach(async () => {
  // A test that timed out leaves the bench running: SIGTERM makes it clean up and exit.
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child?.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  }
  child = undefined;
});

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    child = spawn(process.execPath, [builtEntry("bench/main.ts"), ...args], {
      cwd: ROOT,
      env: { ...process.env, VITEST: undefined },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (c: Buffer) => {
      stdout += c.toString("utf8");
    });
    child.stderr?.on("data", (c: Buffer) => {
      stderr += c.toString("utf8");
    });
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("bench compare (short run)", () => {
  // Five systems one after the other, each started, warmed and drained: 59-94 s in the niced
  // parallel run of `npm test`, over 123 s with one more busy process on the machine. The bound
  // only stops a hung run; what this test checks is exactly-once and the files.
  it("runs every system exactly once per message and writes JSON and SVG", { timeout: 300_000 }, async () => {
    await mkdir(path.join(ROOT, ".tmp"), { recursive: true });
    const out = await mkdtemp(path.join(ROOT, ".tmp", "bench-out-"));
    try {
      const run = await runBench([
        "compare",
        "--warmup-messages",
        String(WARMUP),
        "--messages",
        String(MESSAGES),
        ...SHORT_PHASES,
        "--drain-seconds",
        "30",
        "--out",
        out,
      ]);
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
      expect(run.stderr).not.toContain("FAILURE");

      const files = await readdir(out);
      const json = files.filter((f) => /^compare-.*\.json$/.test(f));
      const svg = files.filter((f) => /^compare-.*\.svg$/.test(f));
      expect(json).toHaveLength(1);
      expect(svg).toHaveLength(1);

      const report = JSON.parse(await readFile(path.join(out, json[0]!), "utf8")) as {
        results: Result[];
        advantages: { baseline: string; peers: { name: string }[] }[];
        postgres: Record<string, string>;
        databaseOnlyBurnDown: { messages: number; consumePerSec: number } | null;
        databaseOnlyAwaited: {
          producers: number;
          perSec: number;
          batchMean: number;
          ackedPerSec: number;
        } | null;
      };
      expect(report.results.map((r) => r.name)).toEqual(SYSTEMS);
      // Every row ran on a server whose WAL segments are recycled, as a store's that has run (a
      // new store creates each one, zero-filled, on a commit's path).
      expect(report.postgres.min_wal_size).toBe("1024 MB");
      expect(report.postgres.wal_state).toMatch(
        /^WAL prepared as a running store's: 64 segments written and recycled/,
      );
      expect(run.stderr).toContain("bench: WAL prepared as a running store's");
      for (const r of report.results) {
        expect(r.failures, r.name).toEqual([]);
        expect(r.caps, r.name).not.toBe("");
        expect(r.version, r.name).toMatch(/\d+\.\d+\.\d+/);
        expect([r.duplicates, r.missing], r.name).toEqual([0, 0]);
        expect(r.burnDown?.counts, r.name).toMatchObject({
          sent: MESSAGES,
          handled: MESSAGES,
          duplicates: 0,
          missing: 0,
          enqueueFailed: 0,
        });
        expect(r.burnDown!.throughputPerSec, r.name).toBeGreaterThan(0);
        // The warm-up ran the whole path, paused the consumer, and burn-down resumed it: nothing
        // of either was lost or handled twice.
        expect(r.warmUp?.counts, r.name).toMatchObject({
          sent: WARMUP,
          handled: WARMUP,
          duplicates: 0,
          missing: 0,
        });
        for (const phase of [r.steady, r.flatAwaited, r.flatPipelined]) {
          expect(phase, r.name).not.toBeNull();
          expect(phase!.counts.missing, r.name).toBe(0);
          expect(phase!.counts.duplicates, r.name).toBe(0);
          expect(phase!.counts.handled, r.name).toBe(phase!.counts.sent);
        }
        // CPU per message handled, from /proc: PostgreSQL works in every flat-out second.
        expect(r.burnDown!.cpu, r.name).not.toBeNull();
        expect(r.flatAwaited!.cpu?.database, r.name).toBeGreaterThan(0);
        const c = r.flatAwaited!.cpu!;
        expect(c.total, r.name).toBeCloseTo(c.database + c.system + c.bench, 0);
        expect(r.footprint.databaseBytes, r.name).toBeGreaterThan(0);
        expect(r.footprint.retention, r.name).not.toBe("");
        expect(r.footprint.peakRssKb, r.name).toBeGreaterThan(0);
      }
      // kiteq-pg's producers share one SDK connection by default, as an application's senders share
      // its client (--kiteq-connections).
      for (const r of report.results.filter((x) => x.name.startsWith("kiteq-pg"))) {
        expect(r.settings.producerConnections, r.name).toBe(1);
      }
      // The database-only references (kiteq-pg's statements alone) ran, and each kiteq-pg row is
      // given as a share of them: burn-down, and flat out with 16 callers each awaiting a publish.
      expect(report.databaseOnlyBurnDown?.messages).toBe(MESSAGES);
      expect(report.databaseOnlyBurnDown?.consumePerSec).toBeGreaterThan(0);
      expect(report.databaseOnlyAwaited?.producers).toBe(16);
      expect(report.databaseOnlyAwaited?.perSec).toBeGreaterThan(0);
      expect(report.databaseOnlyAwaited?.ackedPerSec).toBeGreaterThan(0);
      expect(report.databaseOnlyAwaited?.batchMean).toBeGreaterThan(1);
      expect(run.stdout).toMatch(
        /database-only reference, 16x1: .*; kiteq-pg-uncapped \d+%, kiteq-pg \d+% of it/,
      );
      // Each peer row is compared with both kiteq-pg rows.
      expect(report.advantages.map((a) => a.baseline)).toEqual(["kiteq-pg-uncapped", "kiteq-pg"]);
      for (const a of report.advantages) expect(a.peers.map((p) => p.name)).toEqual(PEERS);

      const chart = await readFile(path.join(out, svg[0]!), "utf8");
      expect(chart.startsWith("<svg")).toBe(true);
      for (const name of SYSTEMS) expect(chart).toContain(name);

      // The bench removed its own temp dir (PostgreSQL data included).
      const tempDir = /temp dir (\S+)/.exec(run.stderr)?.[1];
      expect(tempDir).toBeDefined();
      expect(existsSync(tempDir!)).toBe(false);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it("runs the rows in rounds, each round in the other order, and judges the medians", {
    timeout: 300_000,
  }, async () => {
    await mkdir(path.join(ROOT, ".tmp"), { recursive: true });
    const out = await mkdtemp(path.join(ROOT, ".tmp", "bench-out-"));
    try {
      const run = await runBench([
        "compare",
        "--systems",
        "kiteq-pg-uncapped,pg-boss-poll",
        "--rounds",
        "2",
        "--warmup-messages",
        "0",
        "--messages",
        "200",
        ...SHORT_PHASES,
        "--db-only",
        "0",
        "--fresh-wal",
        "1",
        "--out",
        out,
      ]);
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
      expect(run.stderr).not.toContain("WAL prepared");
      expect(run.stderr).toContain("round 1 of 2: kiteq-pg-uncapped, pg-boss-poll");
      expect(run.stderr).toContain("round 2 of 2: pg-boss-poll, kiteq-pg-uncapped");
      expect(run.stdout).toContain("compare: acceptance over 2 rounds");
      const json = (await readdir(out)).filter((f) => /^compare-.*\.json$/.test(f));
      const report = JSON.parse(await readFile(path.join(out, json[0]!), "utf8")) as {
        postgres: Record<string, string>;
        rounds: { results: Result[] }[];
        acceptanceOverRounds: { check: string; rounds: string[]; median: number | null }[];
      };
      expect(report.postgres.wal_state).toMatch(/^new store: no WAL segment to recycle/);
      // Every round's rows in table order, each exactly once in burn-down.
      expect(report.rounds.map((r) => r.results.map((x) => x.name))).toEqual([
        ["kiteq-pg-uncapped", "pg-boss (poll 0.5 s)"],
        ["kiteq-pg-uncapped", "pg-boss (poll 0.5 s)"],
      ]);
      for (const r of report.rounds.flatMap((x) => x.results)) {
        expect(r.burnDown?.counts, r.name).toMatchObject({
          sent: 200,
          handled: 200,
          duplicates: 0,
          missing: 0,
        });
      }
      const ratio = report.acceptanceOverRounds.find((c) =>
        c.check.startsWith("flat 16x1: kiteq-pg-uncapped handled"),
      );
      expect(ratio?.rounds).toHaveLength(2);
      expect(ratio?.median).toBeGreaterThan(0);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
