/**
 * Flag handling shared by the bench suites: each suite declares its flags once (name, default,
 * help text); parseArgs (node:util) reads them and the values are checked and typed here.
 */
import { parseArgs } from "node:util";

/** One numeric or string flag of a suite. */
export interface FlagSpec {
  readonly default: number | string;
  readonly help: string;
}

/** A suite's flags, by long name (kebab-case). */
export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/** Parsed values: numbers stay numbers, strings stay strings. */
export type FlagValues<S extends FlagSpecs> = {
  [K in keyof S]: S[K]["default"] extends number ? number : string;
};

/** Thrown for a bad flag; main prints the message and the usage, exit status 2. */
export class UsageError extends Error {}

/** Parse `argv` against `specs` (unknown flags and positionals are errors). */
export function parseSuiteFlags<S extends FlagSpecs>(argv: readonly string[], specs: S): FlagValues<S> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: Object.fromEntries(Object.keys(specs).map((k) => [k, { type: "string" as const }])),
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const out: Record<string, number | string> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const raw = parsed.values[name];
    if (raw === undefined || typeof raw !== "string") {
      out[name] = spec.default;
      continue;
    }
    if (typeof spec.default === "number") {
      const n = Number(raw.replaceAll("_", ""));
      if (!Number.isFinite(n) || n < 0)
        throw new UsageError(`--${name}: expected a number >= 0, got "${raw}"`);
      out[name] = n;
    } else {
      out[name] = raw;
    }
  }
  return out as FlagValues<S>;
}

/** Help lines for a suite's flags: `--name N   help (default X)`. */
export function describeFlags(specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, s]) => {
    const arg = typeof s.default === "number" ? "N" : "S";
    return [`  --${name} ${arg}`, `${s.help} (default ${s.default === "" ? '""' : s.default})`] as const;
  });
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  return rows.map(([a, b]) => a.padEnd(width) + b).join("\n");
}

/** A comma-separated list of positive integers, e.g. "1,4,16". */
export function intList(name: string, raw: string): number[] {
  const list = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map(Number);
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n <= 0)) {
    throw new UsageError(`--${name}: expected a comma-separated list of positive integers, got "${raw}"`);
  }
  return list;
}
