/**
 * `npm run bench -- <suite> [flags]`: the kiteq-pg benchmarks. Each suite starts its own embedded
 * PostgreSQL (fsync on) in a temp dir under ./.tmp and removes it afterwards; results go to the
 * terminal and to bench-results/ as JSON. Figures from a busy machine are noise: measure on a
 * quiet one.
 */
import { pathToFileURL } from "node:url";
import { backlogSuite } from "./backlog.js";
import { comparePeersSuite } from "./compare.js";
import { e2eSuite } from "./e2e.js";
import { describeFlags, UsageError } from "./flags.js";
import { publishSuite } from "./publish.js";
import { sdkSuite } from "./sdk.js";
import type { Suite } from "./suite.js";
import { takeoverSuite } from "./takeover.js";

const SUITES: readonly Suite[] = [
  publishSuite,
  e2eSuite,
  comparePeersSuite,
  backlogSuite,
  takeoverSuite,
  sdkSuite,
];

/** The suites' names, in the order of the help text. */
export const SUITE_NAMES: readonly string[] = SUITES.map((s) => s.name);

function usage(): string {
  const lines = [
    "usage: npm run bench -- <suite> [flags]    (--help after a suite: its flags)",
    "",
    "suites:",
  ];
  for (const s of SUITES) lines.push(`  ${s.name.padEnd(9)} ${s.summary}`);
  for (const s of SUITES) lines.push("", `${s.name} flags:`, describeFlags(s.flags));
  return lines.join("\n");
}

/** Run `bench <suite> [flags]` with `argv` (after "bench"); resolves with the exit code. */
export async function runBench(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const suite = SUITES.find((s) => s.name === name);
  if (suite === undefined) {
    console.error(`bench: unknown suite "${name}"\n\n${usage()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`${suite.name}: ${suite.summary}\n\nflags:\n${describeFlags(suite.flags)}`);
    return 0;
  }
  try {
    return await suite.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`bench ${suite.name}: ${err.message}\n\nflags:\n${describeFlags(suite.flags)}`);
      return 2;
    }
    throw err;
  }
}

/** `npm run bench -- ...` runs this file; `kiteq-pg bench ...` imports runBench. */
export function runBenchAndExit(argv: string[]): void {
  runBench(argv).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`bench: FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exit(1);
    },
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runBenchAndExit(process.argv.slice(2));
}
