/**
 * Clean-up of data directories that a root run placed under /var/lib/kiteq-pg/data because the
 * postgres user could not reach the ones asked for (a clone inside a 0700 folder, as in CI):
 * removing the test's folder removes only the symlink, so the placed directory goes here.
 */
import { existsSync } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { LINK_NOTE_SUFFIX, RUNTIME_BASE } from "../../src/store/embedded-place.js";

/** Removes the placed data directories linked from a path under `prefix` that no longer exists. */
export async function removePlacedDataDirs(prefix: string): Promise<string[]> {
  const base = path.join(RUNTIME_BASE, "data");
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names.filter((n) => n.endsWith(LINK_NOTE_SUFFIX))) {
    const note = path.join(base, name);
    const linkedFrom = (await readFile(note, "utf8").catch(() => "")).trim();
    if (!linkedFrom.startsWith(prefix) || existsSync(linkedFrom)) continue;
    const dir = note.slice(0, -LINK_NOTE_SUFFIX.length);
    await rm(dir, { recursive: true, force: true });
    await rm(note, { force: true });
    removed.push(dir);
  }
  return removed;
}

/** Removes one placed data directory (and its note) when `dataDir` is not under `keepUnder`. */
export async function removePlacedDataDir(dataDir: string, keepUnder: string): Promise<void> {
  if (dataDir.startsWith(`${keepUnder}${path.sep}`)) return;
  if (!dataDir.startsWith(path.join(RUNTIME_BASE, "data"))) return;
  await rm(dataDir, { recursive: true, force: true });
  await rm(`${dataDir}${LINK_NOTE_SUFFIX}`, { force: true });
}
