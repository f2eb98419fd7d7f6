/**
 * Command-line flags, Go style as KiteQ takes them: `-flag=value`, `-flag value`, and the same
 * with two dashes. Every config flag takes a value (the next argument, even if it starts with a
 * dash, as in Go). `--` ends the flags.
 */
import { type Layer, SETTING_KEYS, SETTINGS, type SettingKey } from "./settings.js";
import { configError, parseAt } from "./values.js";

/** What parseFlags found. */
export interface ParsedFlags {
  /**
   * Flag values: config flags under their setting key (e.g. `clusterName` for `-clusterName`,
   * `--cluster-name`), extra flags under their name as given in knownExtra (without `=`); a
   * boolean extra given without a value is "true". The last occurrence wins.
   */
  readonly flags: Readonly<Record<string, string>>;
  /** Everything that is not a flag nor a flag's value (a subcommand and its arguments), in order. */
  readonly positionals: readonly string[];
  /** The config flags alone, as `--name=value` arguments, to pass to loadConfig. */
  readonly configArgs: readonly string[];
}

interface Hit {
  readonly key: string;
  /** The flag as typed, e.g. `-bind`, `--cluster-name`. */
  readonly flag: string;
  readonly value: string;
  readonly config: boolean;
}

/** Config flag name (without dashes) -> setting key. */
const FLAG_KEYS = new Map<string, SettingKey>(
  SETTING_KEYS.flatMap((key) => SETTINGS[key].flags.map((flag) => [flag, key] as [string, SettingKey])),
);

/** All config flag names, for help texts. */
export function configFlagNames(): string[] {
  return [...FLAG_KEYS.keys()];
}

function scan(argv: readonly string[], knownExtra: readonly string[]) {
  const extras = new Map(knownExtra.map((e) => [e.replace(/=$/, ""), e.endsWith("=")]));
  const hits: Hit[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    const m = /^(--?)([^-=][^=]*)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      if (arg.startsWith("-") && arg !== "-") {
        throw configError(`unknown flag ${arg.split("=")[0]}`, arg.split("=")[0] ?? arg);
      }
      positionals.push(arg);
      continue;
    }
    const name = m[2] ?? "";
    const flag = `${m[1]}${name}`;
    const inline = m[3];
    const key = FLAG_KEYS.get(name);
    const takesValue = key !== undefined || extras.get(name) === true;
    if (key === undefined && !extras.has(name)) throw configError(`unknown flag ${flag}`, flag);
    let value = inline;
    if (value === undefined && takesValue) {
      value = argv[++i];
      if (value === undefined) throw configError(`flag ${flag} needs a value`, key ?? name);
    }
    hits.push({ key: key ?? name, flag, value: value ?? "true", config: key !== undefined });
  }
  return { hits, positionals };
}

/**
 * Splits argv into flags and positionals. Throws ConfigInvalid on an unknown flag or a flag
 * missing its value. `knownExtra` names the caller's own flags (without dashes): `"json"` is a
 * boolean flag, `"count="` takes a value. Config values are not validated here (loadConfig does).
 */
export function parseFlags(argv: readonly string[], knownExtra: readonly string[] = []): ParsedFlags {
  const { hits, positionals } = scan(argv, knownExtra);
  const flags: Record<string, string> = {};
  const configArgs: string[] = [];
  for (const hit of hits) {
    flags[hit.key] = hit.value;
    if (hit.config) configArgs.push(`${hit.flag}=${hit.value}`);
  }
  return { flags, positionals, configArgs };
}

/** The config flags of argv as a validated layer; argv must hold config flags only. */
export function readFlags(argv: readonly string[]): Layer {
  const { hits, positionals } = scan(argv, []);
  if (positionals.length > 0) {
    throw configError(
      `unexpected argument ${JSON.stringify(positionals[0])} (only flags are accepted)`,
      "argv",
    );
  }
  const layer: Layer = { values: {}, origin: {} };
  for (const hit of hits) read(layer, hit.key as SettingKey, hit);
  return layer;
}

function read<K extends SettingKey>(layer: Layer, key: K, hit: Hit): void {
  const value = parseAt(SETTINGS[key].parse, hit.value, true, { key, name: hit.flag });
  // `--db` repeated adds shards (in order); every other flag: the last one wins.
  const before = layer.values.databaseUrl;
  if (key === "databaseUrl" && before !== undefined) {
    layer.values.databaseUrl = [...before, ...(value as string[])];
    layer.origin.databaseUrl = `flag ${hit.flag}`;
    return;
  }
  layer.values[key] = value;
  layer.origin[key] = `flag ${hit.flag}`;
}
