/**
 * Which release of each system the compare suite ran: read from the installed package.json at run
 * time (never a hard-coded label), and a caveat when a package's `engines.node` range excludes the
 * running Node.js (pg-boss 12 and graphile-worker 0.18 declare Node 22 but run on Node 20).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT } from "../environment.js";

/** A package as installed: name, version and its declared `engines.node` (if any). */
export interface InstalledPackage {
  name: string;
  version: string;
  enginesNode: string | undefined;
}

/** Read `node_modules/<name>/package.json` (or the project's own package.json for ""). */
export function installedPackage(name: string): InstalledPackage {
  const file =
    name === "" ? path.join(ROOT, "package.json") : path.join(ROOT, "node_modules", name, "package.json");
  const pkg = JSON.parse(readFileSync(file, "utf8")) as {
    name: string;
    version: string;
    engines?: { node?: string };
  };
  return { name: pkg.name, version: pkg.version, enginesNode: pkg.engines?.node };
}

/** "pg-boss 12.38.0". */
export function versionLabel(p: InstalledPackage): string {
  return `${p.name} ${p.version}`;
}

type Version = [number, number, number];

function parseVersion(s: string): Version | undefined {
  const m = /^v?(\d+)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?(?:[-+].*)?$/.exec(s.trim());
  if (!m) return undefined;
  const n = (g: string | undefined) => (g === undefined || g === "x" || g === "*" ? 0 : Number(g));
  return [n(m[1]), n(m[2]), n(m[3])];
}

function cmp(a: Version, b: Version): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/** One comparator (">=22.12.0", "^20", "<23", "20.1.0") against `v`; undefined if unparsable. */
function satisfiesComparator(v: Version, c: string): boolean | undefined {
  const m = /^(>=|<=|>|<|=|\^|~)?\s*(.+)$/.exec(c);
  if (!m) return undefined;
  const op = m[1] ?? "=";
  const r = parseVersion(m[2]!);
  if (r === undefined) return undefined;
  const d = cmp(v, r);
  switch (op) {
    case ">=":
      return d >= 0;
    case ">":
      return d > 0;
    case "<=":
      return d <= 0;
    case "<":
      return d < 0;
    case "^":
      return d >= 0 && (r[0] > 0 ? v[0] === r[0] : v[0] === 0 && v[1] === r[1]);
    case "~":
      return d >= 0 && v[0] === r[0] && v[1] === r[1];
    default:
      // "20" or "20.x" mean any 20.*.*; a full version means exactly it.
      return /^\d+(\.(x|\*))?$/.test(m[2]!.trim()) ? v[0] === r[0] : d === 0;
  }
}

/**
 * Whether `nodeVersion` satisfies an npm `engines` range: `||` of space-separated comparators
 * (>=, >, <=, <, =, ^, ~). undefined when the range uses anything else (hyphen ranges, tags).
 */
export function satisfiesRange(nodeVersion: string, range: string): boolean | undefined {
  const v = parseVersion(nodeVersion);
  if (v === undefined) return undefined;
  let unknown = false;
  for (const alt of range.split("||")) {
    const parts = alt
      .trim()
      .split(/\s+/)
      .filter((s) => s !== "");
    if (parts.length === 0 || parts.includes("*")) return true;
    const results = parts.map((c) => satisfiesComparator(v, c));
    if (results.some((r) => r === undefined)) {
      unknown = true;
      continue;
    }
    if (results.every((r) => r === true)) return true;
  }
  return unknown ? undefined : false;
}

/**
 * The caveat to print for `p` on `nodeVersion`, or undefined when its engines range includes it.
 */
export function enginesCaveat(p: InstalledPackage, nodeVersion: string): string | undefined {
  if (p.enginesNode === undefined) return undefined;
  const ok = satisfiesRange(nodeVersion, p.enginesNode);
  if (ok === true) return undefined;
  const verdict = ok === false ? "excludes" : "may exclude (range not checked)";
  return (
    `caveat: ${versionLabel(p)} declares engines.node "${p.enginesNode}", which ${verdict} this Node.js ` +
    `${nodeVersion}; it is run here anyway (exactly-once is checked in every phase)`
  );
}
