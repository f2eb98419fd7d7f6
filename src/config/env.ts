/**
 * KITEQ_* environment variables (KITEQ_DB_URL, KITEQ_REGISTRY, KITEQ_SECRETS="g1=s1,g2=s2", ...;
 * names in settings.ts). An empty variable counts as unset; an unknown KITEQ_* one is a warning.
 */
import { type Layer, SETTING_KEYS, SETTINGS, type SettingKey } from "./settings.js";
import { configError, parseAt } from "./values.js";

const ENV_KEYS = new Map<string, SettingKey>(
  SETTING_KEYS.flatMap((key) => SETTINGS[key].env.map((name) => [name, key] as [string, SettingKey])),
);

/** KITEQ_* variables read outside the settings (src/log.ts), with their values. */
const OTHER_VARIABLES = new Map<string, readonly string[]>([["KITEQ_LOG_FORMAT", ["json", "pretty"]]]);

/** All KITEQ_* variable names understood, for help texts. */
export function configEnvNames(): string[] {
  return [...ENV_KEYS.keys(), ...OTHER_VARIABLES.keys()];
}

/** Reads and validates the KITEQ_* variables of `env`. */
export function readEnv(env: NodeJS.ProcessEnv): { layer: Layer; warnings: string[] } {
  const layer: Layer = { values: {}, origin: {} };
  const warnings: string[] = [];
  for (const name of Object.keys(env).sort()) {
    const value = env[name];
    if (!name.startsWith("KITEQ_") || value === undefined || value === "") continue;
    const allowed = OTHER_VARIABLES.get(name);
    if (allowed !== undefined) {
      if (!allowed.includes(value)) {
        warnings.push(`${name}=${value} is not one of ${allowed.join(", ")} (ignored)`);
      }
      continue;
    }
    const key = ENV_KEYS.get(name);
    if (key === undefined) {
      warnings.push(`unknown environment variable ${name} (ignored)`);
      continue;
    }
    read(layer, key, name, value);
  }
  return { layer, warnings };
}

function read<K extends SettingKey>(layer: Layer, key: K, name: string, value: string): void {
  const previous = layer.origin[key];
  if (previous !== undefined) throw configError(`${previous} and ${name} both set ${key}; set only one`, key);
  layer.values[key] = parseAt(SETTINGS[key].parse, value, true, { key, name });
  layer.origin[key] = name;
}
