/**
 * The static registry (single node, no ZooKeeper): bindings come from the bindings table, which
 * KiteQ's YAML file registry (when configured) fills at start and whenever the file changes.
 */
import { unwatchFile, watchFile } from "node:fs";
import type pg from "pg";
import { loadRegistryFile } from "../binding/registry-file.js";
import { toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { replaceSourceBindings } from "../store/bindings.js";

/** Load the YAML registry file into the bindings table now, and again on every change. */
export async function syncRegistryFile(pool: pg.Pool, file: string, log: Logger): Promise<() => void> {
  const load = async () => {
    const parsed = await loadRegistryFile(file);
    for (const r of parsed.refused) {
      log.warn(
        {
          code: r.error.code,
          file,
          groupId: r.groupId,
          topic: r.topic,
          pattern: r.pattern,
          err: r.error.message,
        },
        "Regx binding refused: invalid pattern (Go/RE2 syntax); the other bindings are loaded",
      );
    }
    await replaceSourceBindings(pool, "static", parsed.bindings, new Date());
    log.info({ file, bindings: parsed.bindings.length }, "registry file loaded");
  };
  await load();
  // Polling, not fs.watch: it survives editors that replace the file and network file systems.
  const onChange = () => {
    load().catch((err: unknown) => {
      const e = toKiteqError(err, { key: file });
      log.error(
        { code: e.code, err: e.message, file },
        "registry file not reloaded; keeping the previous bindings",
      );
    });
  };
  watchFile(file, { interval: 1000 }, onChange);
  return () => unwatchFile(file, onChange);
}
