/**
 * KiteQ's cluster.toml: `[registry.{env}] hosts=...` (older files: `[zookeeper.{env}]`),
 * `[clusters.{name}]` with env, topics, dlqExecHour, logxml, db, deliveryFirst, deliverySeconds,
 * maxDeliverWorkers, recoverSeconds, recievePermitsPerSecond, plus kiteq-pg's own keys (names in
 * settings.ts) and a top-level `[secrets]` table of groupId = "secret". Unknown keys are warnings.
 */
import { readFileSync } from "node:fs";
import { parse, TomlError } from "smol-toml";
import { type Layer, SETTING_KEYS, SETTINGS, type SettingKey } from "./settings.js";
import {
  boolean,
  configError,
  isGroupId,
  KEYWORD_FORM,
  parseAt,
  postgresUrl,
  postgresUrlList,
  redactUrl,
  registry,
  show,
} from "./values.js";

type Table = Record<string, unknown>;

/** The selected cluster's settings, and which cluster that was. */
export interface ClusterFile {
  readonly layer: Layer;
  /** The `[clusters.X]` used; null if the file defines none. */
  readonly clusterName: string | null;
  readonly warnings: string[];
}

/** Cluster-table key -> setting key (the keys toml.ts reads itself are not here). */
const TOML_KEYS = new Map<string, SettingKey>(
  SETTING_KEYS.flatMap((key) => SETTINGS[key].toml.map((name) => [name, key] as [string, SettingKey])),
);

const TOP_LEVEL = new Set(["registry", "zookeeper", "clusters", "secrets"]);

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Reads `path` and the cluster `clusterName` (may be omitted when the file has one cluster). */
export function readClusterFile(path: string, clusterName: string | undefined): ClusterFile {
  const doc = parseFile(path);
  const warnings: string[] = [];
  const layer: Layer = { values: {}, origin: {} };
  const expectTable = (name: string, v: unknown, what: string): Table => {
    if (!isTable(v)) {
      throw configError(`invalid value for ${name} in ${path}: ${show(v)} (expected ${what})`, name, path);
    }
    return v;
  };

  for (const key of Object.keys(doc)) {
    if (!TOP_LEVEL.has(key)) warnings.push(`unknown key ${key} in ${path} (ignored)`);
  }
  const registries = expectTable("registry", doc.registry ?? doc.zookeeper ?? {}, "[registry.<env>] tables");
  const clusters = expectTable("clusters", doc.clusters ?? {}, "[clusters.<name>] tables");

  const names = Object.keys(clusters);
  let selected: string | null = null;
  if (clusterName !== undefined) {
    if (!Object.hasOwn(clusters, clusterName)) {
      throw configError(
        `unknown clusterName ${JSON.stringify(clusterName)}: ${path} defines ${describe(names)}`,
        "clusterName",
        path,
      );
    }
    selected = clusterName;
  } else if (names.length === 1) {
    selected = names[0] ?? null;
  } else if (names.length > 1) {
    throw configError(
      `clusterName is required: ${path} defines several clusters (${names.join(", ")}); pass -clusterName`,
      "clusterName",
      path,
    );
  }

  if (selected !== null) {
    const cluster = expectTable(`clusters.${selected}`, clusters[selected], "a table");
    for (const [name, raw] of Object.entries(cluster)) {
      const site = { name, file: path };
      switch (name) {
        case "env":
          readRegistry(layer, registries, raw, path, warnings);
          break;
        case "logxml": // KiteQ's log4go configuration: accepted, ignored (we log JSON lines).
          break;
        case "db":
          readDb(layer, raw, path, warnings);
          break;
        case "deliveryFirst":
          if (parseAt(boolean, raw, false, { key: "deliveryFirst", ...site })) {
            warnings.push(`deliveryFirst=true in ${path} ignored: kiteq-pg always stores before delivering`);
          }
          break;
        default: {
          const key = TOML_KEYS.get(name);
          if (key === undefined) {
            warnings.push(`unknown key clusters.${selected}.${name} in ${path} (ignored)`);
          } else if (layer.origin[key] !== undefined) {
            throw configError(`${name} and ${layer.origin[key]} both set ${key}; set only one`, key, path);
          } else {
            set(layer, key, raw, name, path);
          }
        }
      }
    }
  }

  if (doc.secrets !== undefined) readSecrets(layer, expectTable("secrets", doc.secrets, "a table"), path);
  return { layer, clusterName: selected, warnings };
}

function set<K extends SettingKey>(layer: Layer, key: K, raw: unknown, name: string, path: string): void {
  layer.values[key] = parseAt(SETTINGS[key].parse, raw, false, { key, name, file: path });
  layer.origin[key] = `${name} in ${path}`;
}

function describe(names: string[]): string {
  return names.length === 0 ? "no clusters" : `clusters ${names.join(", ")}`;
}

function parseFile(path: string): Table {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "config file not found" : `cannot read config file (${code ?? err})`;
    throw configError(`${why}: ${path}`, "configPath", path);
  }
  try {
    return parse(text);
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    const reason = (err.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
    throw configError(
      `invalid TOML in ${path} at line ${err.line}, column ${err.column}: ${reason}`,
      "configPath",
      path,
    );
  }
}

/** `env = "dev"` selects `[registry.dev]`, whose `hosts` is the registry URI. */
function readRegistry(layer: Layer, registries: Table, env: unknown, path: string, warnings: string[]): void {
  if (typeof env !== "string" || !Object.hasOwn(registries, env)) {
    const known = Object.keys(registries).join(", ") || "none";
    throw configError(
      `invalid value for env in ${path}: ${show(env)} (expected the name of a [registry.<env>] table: ${known})`,
      "registry",
      path,
    );
  }
  const name = `registry.${env}`;
  const table = registries[env];
  if (!isTable(table) || !Object.hasOwn(table, "hosts")) {
    throw configError(
      `invalid value for ${name} in ${path}: ${show(table)} (expected a table with hosts)`,
      "registry",
      path,
    );
  }
  for (const key of Object.keys(table)) {
    if (key !== "hosts") warnings.push(`unknown key ${name}.${key} in ${path} (ignored)`);
  }
  layer.values.registry = parseAt(registry, table.hosts, false, {
    key: "registry",
    name: `${name}.hosts`,
    file: path,
  });
  layer.origin.registry = `${name}.hosts in ${path}`;
}

/** `db`: a PostgreSQL URL is used; another store's URL (rocksdb://, mysql://, file://) is ignored. */
function readDb(layer: Layer, raw: unknown, path: string, warnings: string[]): void {
  const site = { key: "databaseUrl", name: "db", file: path };
  if (
    Array.isArray(raw) ||
    (typeof raw === "string" && (/^\s*postgres(ql)?:\/\//i.test(raw) || KEYWORD_FORM.test(raw)))
  ) {
    // Several URLs (an array, or one string separated by spaces): the shards, in order.
    layer.values.databaseUrl = parseAt(postgresUrlList, raw, false, site);
    layer.origin.databaseUrl = `db in ${path}`;
  } else if (typeof raw === "string" && /^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) {
    warnings.push(
      `db ${show(redactUrl(raw))} in ${path} ignored: kiteq-pg stores in PostgreSQL ` +
        "(give a postgres:// URL, or none for the embedded one)",
    );
  } else {
    parseAt(postgresUrl, raw, false, site); // throws: not a URL at all
  }
}

/** Top-level `[secrets]`: groupId = "secret". Secret values never appear in messages. */
function readSecrets(layer: Layer, table: Table, path: string): void {
  const secrets = new Map<string, string>();
  for (const [group, secret] of Object.entries(table)) {
    if (!isGroupId(group) || typeof secret !== "string" || secret === "") {
      throw configError(
        `invalid value for secrets.${group} in ${path}: (not shown) (expected a groupId of letters, digits, '.', '_', '-' = a non-empty string)`,
        "secrets",
        path,
      );
    }
    secrets.set(group, secret);
  }
  layer.values.secrets = secrets;
  layer.origin.secrets = `[secrets] in ${path}`;
}
