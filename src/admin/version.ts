/**
 * The broker's version: package.json's, and in a git checkout the commit it runs (`0.1.0+4d203b3`),
 * so that a cluster in the middle of a rolling upgrade says which node runs which code (the
 * package version alone is the same on every node). Read once; "unknown" when package.json cannot
 * be read; without a readable .git (an installed package, an image without it) the version alone.
 */
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
      version?: unknown;
    };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

const SHA = /^[0-9a-f]{40}$/;

/**
 * The commit checked out in `root` (its first 7 hex digits), read from .git without running git:
 * HEAD, the branch's ref file or packed-refs; a worktree's `.git` file is followed. undefined when
 * there is none or it cannot be read.
 */
export function checkedOutCommit(root: string): string | undefined {
  try {
    let gitDir = path.join(root, ".git");
    if (statSync(gitDir).isFile()) {
      const m = /^gitdir:\s*(.+)$/m.exec(readFileSync(gitDir, "utf8"));
      if (m === null) return undefined;
      gitDir = path.resolve(root, m[1]!.trim());
    }
    const head = readFileSync(path.join(gitDir, "HEAD"), "utf8").trim();
    if (SHA.test(head)) return head.slice(0, 7);
    const ref = /^ref:\s*(refs\/\S+)$/.exec(head)?.[1];
    if (ref === undefined) return undefined;
    // A worktree's own dir holds HEAD; its refs are in the common dir.
    const commonDir = (() => {
      try {
        return path.resolve(gitDir, readFileSync(path.join(gitDir, "commondir"), "utf8").trim());
      } catch {
        return gitDir;
      }
    })();
    for (const dir of [gitDir, commonDir]) {
      try {
        const sha = readFileSync(path.join(dir, ref), "utf8").trim();
        if (SHA.test(sha)) return sha.slice(0, 7);
      } catch {
        // Not a loose ref here: packed-refs below.
      }
    }
    for (const line of readFileSync(path.join(commonDir, "packed-refs"), "utf8").split("\n")) {
      const [sha, name] = line.trim().split(" ");
      if (name === ref && sha !== undefined && SHA.test(sha)) return sha.slice(0, 7);
    }
    return undefined;
  } catch {
    return undefined;
  }
}

/** package.json's version of the running broker, with the commit when run from a git checkout. */
export const BROKER_VERSION: string = ((): string => {
  const version = readVersion();
  const commit = checkedOutCommit(ROOT);
  return commit === undefined ? version : `${version}+${commit}`;
})();
