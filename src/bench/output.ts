/**
 * What the bench shows and keeps: aligned tables on the terminal, a progress line on stderr, and
 * JSON (and SVG) files under bench-results/.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

/** Default output directory (gitignored). */
export const RESULTS_DIR = "bench-results";

/** Print a table: first row headers; numbers right-aligned. */
export function printTable(title: string, headers: string[], rows: (string | number)[][]): void {
  const cells = [headers, ...rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[], isHeader: boolean) =>
    r
      .map((c, i) => {
        const numeric = !isHeader && typeof rows[0]?.[i] === "number";
        return numeric ? c.padStart(widths[i]!) : c.padEnd(widths[i]!);
      })
      .join("  ");
  console.log(`\n${title}`);
  console.log(line(headers, true));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of cells.slice(1)) console.log(line(r, false));
}

/** A number for a table: thousands separated, at most 2 decimals (1 under 100, none above). */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : 2;
  return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): number {
  return Math.round((bytes / 1024 / 1024) * 10) / 10;
}

/** A target check for a table cell: "ok" or "MISSED". */
export function verdict(ok: boolean): string {
  return ok ? "ok" : "MISSED";
}

/** `bench-results/<suite>-<timestamp>.<ext>` under `dir`. */
export function resultPath(dir: string, suite: string, stamp: string, ext: string): string {
  return path.resolve(dir, `${suite}-${stamp}.${ext}`);
}

/** A filesystem-safe timestamp, e.g. 2025-01-31T12-00-00Z. */
export function timestamp(d = new Date()): string {
  return d
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replaceAll(":", "-");
}

/** Write a file (creating its directory); returns the path. */
export async function writeResult(file: string, content: string): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
  return file;
}

/** Machine facts for the JSON report. */
export async function machineInfo(): Promise<Record<string, string | number>> {
  const os = await import("node:os");
  return {
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? "",
    memoryMiB: Math.round(os.totalmem() / 1024 / 1024),
    loadAverage1m: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}

/**
 * A progress line on stderr: a bar redrawn in place on a terminal, a plain line every few seconds
 * otherwise (CI logs, tests).
 */
export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private readonly tty = process.stderr.isTTY === true;
  private lastLine = 0;

  constructor(private readonly quiet = false) {}

  /** Show `label` with `done()` out of `total` (units) until end(). */
  track(label: string, total: number, done: () => number, unit = ""): void {
    this.end();
    if (this.quiet) return;
    const started = Date.now();
    const draw = () => {
      const d = Math.min(done(), total);
      const frac = total > 0 ? d / total : 0;
      const secs = ((Date.now() - started) / 1000).toFixed(0);
      if (this.tty) {
        const width = 24;
        const bar = "#".repeat(Math.round(frac * width)).padEnd(width, "-");
        process.stderr.write(
          `\r\x1b[2K[${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${label} ${fmt(d)}/${fmt(total)}${unit} ${secs}s`,
        );
      } else if (Date.now() - this.lastLine >= 5000) {
        this.lastLine = Date.now();
        process.stderr.write(`bench: ${label}: ${fmt(d)}/${fmt(total)}${unit} (${secs}s)\n`);
      }
    };
    this.lastLine = 0;
    draw();
    this.timer = setInterval(draw, this.tty ? 200 : 1000);
    this.timer.unref();
  }

  /** Show `label` with the seconds elapsed out of `totalMs`. */
  timed(label: string, totalMs: number): void {
    const started = Date.now();
    this.track(label, Math.round(totalMs / 1000), () => Math.floor((Date.now() - started) / 1000), "s");
  }

  /** Stop the current line (and clear it on a terminal). */
  end(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.tty) process.stderr.write("\r\x1b[2K");
  }

  /** A one-off note. */
  note(text: string): void {
    if (this.quiet) return;
    if (this.tty && this.timer !== undefined) process.stderr.write("\r\x1b[2K");
    process.stderr.write(`bench: ${text}\n`);
  }
}
