import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BROKER_VERSION, checkedOutCommit } from "../../../src/admin/version.js";

const A = "4d203b3aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B = "de783d0bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

describe("checkedOutCommit: the commit of a git checkout, read without git", () => {
  const dirs: string[] = [];
  const checkout = (files: Record<string, string>): string => {
    const root = mkdtempSync(path.join(tmpdir(), "kiteq-version-"));
    dirs.push(root);
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
      writeFileSync(path.join(root, name), text);
    }
    return root;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("a branch's loose ref, a packed ref, a detached HEAD", () => {
    expect(
      checkedOutCommit(checkout({ ".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": `${A}\n` })),
    ).toBe("4d203b3");
    expect(
      checkedOutCommit(
        checkout({
          ".git/HEAD": "ref: refs/heads/main\n",
          ".git/packed-refs": `# pack-refs with: peeled fully-peeled sorted\n${B} refs/heads/other\n${A} refs/heads/main\n`,
        }),
      ),
    ).toBe("4d203b3");
    expect(checkedOutCommit(checkout({ ".git/HEAD": `${B}\n` }))).toBe("de783d0");
  });

  it("a worktree: its .git file, HEAD in its own dir, refs in the common dir", () => {
    const root = checkout({
      "main/.git/refs/heads/feature": `${B}\n`,
      "main/.git/worktrees/wt/HEAD": "ref: refs/heads/feature\n",
      "main/.git/worktrees/wt/commondir": "../..\n",
      "wt/.git": "gitdir: ../main/.git/worktrees/wt\n",
    });
    expect(checkedOutCommit(path.join(root, "wt"))).toBe("de783d0");
  });

  it("undefined without a readable checkout: no .git, an unborn branch, garbage", () => {
    expect(checkedOutCommit(checkout({ "package.json": "{}" }))).toBeUndefined();
    expect(checkedOutCommit(checkout({ ".git/HEAD": "ref: refs/heads/main\n" }))).toBeUndefined();
    expect(checkedOutCommit(checkout({ ".git/HEAD": "garbage" }))).toBeUndefined();
    expect(checkedOutCommit(checkout({ ".git": "not a gitdir line" }))).toBeUndefined();
  });

  it("the broker's version: package.json's, with the commit when run from a checkout", () => {
    expect(BROKER_VERSION).toMatch(/^\d+\.\d+\.\d+(\+[0-9a-f]{7})?$/);
  });
});
