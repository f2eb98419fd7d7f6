/**
 * Which store a configuration names, as a short opaque digest: the embedded PostgreSQL of a data
 * directory (its real path), or the database(s) of --db (host, port and database of each URL; no
 * user, no password). A broker's /healthz says it, so that the CLI reads through a running
 * broker's admin API only when that broker serves the store the CLI was pointed at (before, a
 * `--db` of one cluster could print the bindings and history of whatever broker answered on the
 * default admin address). A digest, because /healthz needs no token.
 */
import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
import path from "node:path";

/** One database URL without its credentials or options: `host:port/database`, hosts lowercased. */
function databaseOf(url: string): string {
  try {
    const u = new URL(url);
    const socketHost = u.searchParams.get("host");
    const host = (socketHost ?? decodeURIComponent(u.hostname)).toLowerCase() || "localhost";
    const db = decodeURIComponent(u.pathname.replace(/^\//, "")) || decodeURIComponent(u.username);
    return `${host}:${u.port || "5432"}/${db}`;
  } catch {
    // Not a WHATWG URL (several hosts, for failover): the text without its user info.
    return url.replace(/\/\/[^@/]*@/, "//").replace(/\?.*$/, "");
  }
}

/** The store of a configuration (see the module comment). */
export function storeIdentity(config: { databaseUrls: readonly string[]; dataDir: string }): string {
  let named: string;
  if (config.databaseUrls.length === 0) {
    const dir = path.resolve(config.dataDir, "pg");
    let real = dir;
    try {
      real = realpathSync(dir);
    } catch {
      // Not made yet: no broker serves it, and the resolved path matches nobody's real path.
    }
    named = `embedded:${real}`;
  } else {
    named = `db:${config.databaseUrls.map(databaseOf).join(",")}`;
  }
  return createHash("sha256").update(named).digest("hex").slice(0, 16);
}
