/**
 * The shape of a bench suite, and the flags every suite shares.
 */
import type { FlagSpecs } from "./flags.js";
import { RESULTS_DIR } from "./output.js";

/** One `npm run bench -- <name>` suite. */
export interface Suite {
  readonly name: string;
  readonly summary: string;
  readonly flags: FlagSpecs;
  /** Run with raw argv (after the suite name); resolves with the exit status. */
  run(argv: readonly string[]): Promise<number>;
}

/** Flags of every suite. */
export const COMMON_FLAGS = {
  "body-size": { default: 100, help: "message body bytes (at least 16: send time + sequence number)" },
  out: { default: RESULTS_DIR, help: "directory for the JSON (and SVG) results" },
  "fresh-wal": {
    default: 0,
    help: "1: measure a new store, whose every WAL segment is created (zero-filled) on a commit's path, instead of one that has run and recycles them",
  },
} as const satisfies FlagSpecs;
