/** The broker's version, from package.json (read once; "unknown" when it cannot be read). */
import { readFileSync } from "node:fs";

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: unknown;
    };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

/** package.json's version of the running broker. */
export const BROKER_VERSION: string = readVersion();
