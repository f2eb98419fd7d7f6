/**
 * The sources as Node.js runs them without a loader: test files that start the CLI or a broker
 * as a child process run `node .test-dist/cli/main.js`, the layout of `dist/` (the package's
 * `kiteq-pg` bin), instead of `node --import tsx src/cli/main.ts`.
 *
 * Why: tsx transforms the same sources with the same esbuild at every start, which cost each
 * child process about 0.7 s of wall time and 1.2 s of CPU (2026-12-02, 1.4-1.6 s against
 * 0.7-0.8 s for `bind list`); the suite starts well over a hundred. The global setup builds it
 * once per run (a fraction of a second). Tests of the newcomer's path (`npm start`, a fresh
 * clone) still run tsx.
 *
 * `.test-dist/` sits beside `src/` so that paths relative to a module (`../../proto`,
 * `../../migrations`, `../../package.json`) resolve as they do from `src/` and `dist/`.
 */
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { build } from "esbuild";

export const ROOT = path.resolve(import.meta.dirname, "../..");
export const BUILT_DIR = path.join(ROOT, ".test-dist");

/** Path of a built entry point, from its path under src/ (e.g. "cli/main.ts"). */
export function builtEntry(srcRelative: string): string {
  return path.join(BUILT_DIR, srcRelative.replace(/\.ts$/, ".js"));
}

/** The built CLI: `[node, ...cliArgs(args)]` runs `kiteq-pg args`. */
export function cliArgs(args: readonly string[]): string[] {
  return [builtEntry("cli/main.ts"), ...args];
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sourceFiles(full)));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(full);
  }
  return out;
}

/** Transpile every src/**\/*.ts to .test-dist/ (one file per module, as tsc would lay it out). */
export async function buildSources(): Promise<void> {
  await build({
    entryPoints: await sourceFiles(path.join(ROOT, "src")),
    outdir: BUILT_DIR,
    outbase: path.join(ROOT, "src"),
    bundle: false,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "error",
  });
}

/** What `runCli` saw: the exit code (null: killed, e.g. by the timeout) and the output. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run `kiteq-pg ...args` (the built CLI, as the package's bin runs it) as a child process with the
 * test runner's environment minus VITEST and KITEQ_LOG_LEVEL (so it logs as a user's shell would),
 * `env` on top; resolves with its exit code and output, never rejects.
 */
export function runCli(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      cliArgs(args),
      {
        cwd: ROOT,
        timeout: options.timeoutMs ?? 60_000,
        env: { ...process.env, VITEST: undefined, KITEQ_LOG_LEVEL: undefined, ...options.env },
      },
      (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : null, stdout, stderr }),
    );
  });
}
