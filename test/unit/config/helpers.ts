import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { ErrorCode, KiteqError } from "../../../src/errors.js";

/** A temp directory for config files, removed by the returned cleanup. */
export function tempDir(): { write(name: string, text: string): string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), "kiteq-config-"));
  return {
    write(name, text) {
      const path = join(dir, name);
      writeFileSync(path, text);
      return path;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Runs fn, expects a ConfigInvalid KiteqError with context.key = key and all `parts` in its one-line message. */
export function expectConfigError(fn: () => unknown, key: string, ...parts: string[]): KiteqError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, "expected a ConfigInvalid error").toBeInstanceOf(KiteqError);
  const err = thrown as KiteqError;
  expect(err.code).toBe(ErrorCode.ConfigInvalid);
  expect(err.context.key).toBe(key);
  expect(err.message).not.toContain("\n");
  for (const part of parts) expect(err.message).toContain(part);
  return err;
}
