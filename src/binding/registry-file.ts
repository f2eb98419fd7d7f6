/**
 * KiteQ's file registry (YAML): the brokers and their topics, and the bindings, for a setup
 * without ZooKeeper. Parsing is lenient about shapes people write by hand (a single string for
 * a list, numeric strings, yes/no) and precise in its errors (entry index and field).
 *
 *     brokers:
 *       - address: "127.0.0.1:13800"
 *         topics: ["trade", "user"]
 *         env: dev
 *     bindings:
 *       - groupIds: ["s-mts-test", "s-other"]
 *         topic: trade
 *         messageType: pay-succ
 *         bindType: direct        # direct | regx | fanout (or 0/1/2); missing: direct, as KiteQ
 *         watermark: 1000
 *         persistent: true
 */
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { ErrorCode, KiteqError } from "../errors.js";
import {
  BIND_VERSION,
  type Binding,
  BindType,
  bindingFromRecord,
  describe,
  isRecord,
  type RefusedPattern,
  refusedPattern,
} from "./binding.js";
import { conflictError, findBindingConflict } from "./matcher.js";

/** A broker node of the file registry. */
export interface RegistryBroker {
  /** host:port the broker listens on. */
  address: string;
  /** Topics it serves. */
  topics: string[];
  env?: string;
}

/** The content of a registry file. Each file binding becomes one Binding per groupId. */
export interface RegistryFile {
  brokers: RegistryBroker[];
  bindings: Binding[];
  /** Regx bindings left out because Go's regexp refuses their pattern (the others stay). */
  refused: RefusedPattern[];
}

/**
 * Parse a registry file. YAML errors and broker errors are ConfigInvalid; binding errors
 * (including two entries binding a group to the same topic and messageType differently) are
 * BindingInvalid, except a Regx pattern Go refuses: that binding alone is left out and listed
 * in `refused` (to be logged), so one bad pattern does not cost every other group its bindings. Messages name the entry, e.g. `bindings[2].groupIds[1]: is required`.
 * File bindings get version "1.0.0", like KiteQ's file registry.
 */
export function parseRegistryFile(text: string): RegistryFile {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new KiteqError(
      ErrorCode.ConfigInvalid,
      // The first line (it names line and column): the parser's excerpt and caret below it made a
      // several-line error of what the CLI says in one.
      `registry file: not valid YAML: ${(err as Error).message.split("\n")[0]!.replace(/:\s*$/, "")}`,
      {},
      { cause: err },
    );
  }
  if (doc === null || doc === undefined) return { brokers: [], bindings: [], refused: [] };
  if (!isRecord(doc)) {
    throw new KiteqError(
      ErrorCode.ConfigInvalid,
      `registry file: expected a mapping with brokers and bindings, got ${describe(doc)}`,
    );
  }
  const brokers = listOf(doc.brokers, "brokers").map((entry, i) => parseBroker(entry, i));
  const seen = new Map<string, number>();
  brokers.forEach((b, i) => {
    const first = seen.get(b.address);
    if (first !== undefined) {
      throw configError(
        `brokers[${i}].address`,
        `duplicates brokers[${first}]: ${JSON.stringify(b.address)}`,
      );
    }
    seen.set(b.address, i);
  });

  const bindings: Binding[] = [];
  const labels: string[] = [];
  const refused: RefusedPattern[] = [];
  listOf(doc.bindings, "bindings").forEach((entry, i) => {
    for (const [label, binding] of parseFileBinding(entry, i, refused)) {
      bindings.push(binding);
      labels.push(label);
    }
  });
  const conflict = findBindingConflict(bindings);
  if (conflict !== undefined) throw conflictError(bindings, conflict, (k) => labels[k] as string);
  return { brokers, bindings, refused };
}

/** Read and parse a registry file; an unreadable file is ConfigInvalid with the path. */
export async function loadRegistryFile(path: string): Promise<RegistryFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new KiteqError(
      ErrorCode.ConfigInvalid,
      `registry file ${path}: cannot read: ${(err as Error).message}`,
      { path },
      { cause: err },
    );
  }
  try {
    return parseRegistryFile(text);
  } catch (err) {
    if (err instanceof KiteqError) {
      throw new KiteqError(err.code, `${path}: ${err.message}`, { ...err.context, path }, { cause: err });
    }
    throw err;
  }
}

function parseBroker(entry: unknown, i: number): RegistryBroker {
  const label = `brokers[${i}]`;
  if (!isRecord(entry)) throw configError(label, `expected a mapping, got ${describe(entry)}`);
  const address = entry.address;
  if (address === undefined || address === null || address === "") {
    throw configError(`${label}.address`, "is required");
  }
  if (typeof address !== "string")
    throw configError(`${label}.address`, `must be a string, got ${describe(address)}`);
  const port = /:(\d+)$/.exec(address);
  if (port === null || address.length === (port[0] as string).length || !validPort(Number(port[1]))) {
    throw configError(`${label}.address`, `must be host:port, got ${JSON.stringify(address)}`);
  }
  const topics = stringList(entry.topics, `${label}.topics`, (field, message) => configError(field, message));
  const broker: RegistryBroker = { address, topics };
  if (entry.env !== undefined && entry.env !== null) {
    if (typeof entry.env !== "string" && typeof entry.env !== "number") {
      throw configError(`${label}.env`, `must be a string, got ${describe(entry.env)}`);
    }
    broker.env = String(entry.env);
  }
  return broker;
}

function parseFileBinding(entry: unknown, i: number, refused: RefusedPattern[]): [string, Binding][] {
  const label = `bindings[${i}]`;
  const fail = (field: string, message: string) =>
    new KiteqError(ErrorCode.BindingInvalid, `${field}: ${message}`, { index: i });
  if (!isRecord(entry)) throw fail(label, `expected a mapping, got ${describe(entry)}`);
  const rawGroups = entry.groupIds ?? entry.groupId;
  const field = entry.groupIds !== undefined ? "groupIds" : "groupId";
  const groupIds = [...new Set(stringList(rawGroups, `${label}.${field}`, fail))];
  if (groupIds.length === 0) throw fail(`${label}.groupIds`, "is required (a list of consumer groups)");
  const parsed: [string, Binding][] = [];
  for (const groupId of groupIds) {
    try {
      const binding = bindingFromRecord(
        { ...entry, groupId },
        label,
        { index: i },
        {
          lenientScalars: true,
          defaultVersion: BIND_VERSION,
          defaultBindType: BindType.Direct,
        },
      );
      parsed.push([`${label} (group ${JSON.stringify(groupId)})`, binding]);
    } catch (err) {
      const r = refusedPattern(err);
      if (r === undefined) throw err;
      refused.push(r);
    }
  }
  return parsed;
}

/** A YAML list; a missing key is an empty list. */
function listOf(value: unknown, field: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw configError(field, `expected a list, got ${describe(value)}`);
  return value;
}

/** A list of non-empty strings; a single string is a list of one; missing is empty. */
function stringList(
  value: unknown,
  field: string,
  fail: (field: string, message: string) => KiteqError,
): string[] {
  if (value === undefined || value === null) return [];
  const items = Array.isArray(value) ? value : [value];
  return items.map((item: unknown, k) => {
    const itemField = Array.isArray(value) ? `${field}[${k}]` : field;
    if (item === null || item === "") throw fail(itemField, "must not be empty");
    if (typeof item !== "string" && typeof item !== "number") {
      throw fail(itemField, `must be a string, got ${describe(item)}`);
    }
    return String(item);
  });
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

function configError(field: string, message: string): KiteqError {
  return new KiteqError(ErrorCode.ConfigInvalid, `registry file: ${field}: ${message}`);
}
