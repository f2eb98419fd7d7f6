/**
 * Test-only helpers for writing protobuf bytes by hand and taking them apart, independent of the
 * codec under test.
 */
import { expect } from "vitest";
import { type ErrorCode, KiteqError } from "../../../src/errors.js";

/** The bytes of an ASCII/Latin-1 string (for writing string field contents by hand). */
export function ascii(s: string): number[] {
  return [...Buffer.from(s, "latin1")];
}

function readVarint(buf: Buffer, pos: number): [value: number, next: number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    const b = buf[pos++];
    if (b === undefined) throw new Error("truncated varint");
    value += (b & 0x7f) * scale;
    scale *= 128;
    if (b < 0x80) return [value, pos];
  }
}

/** The top-level fields of a protobuf encoding, each with its own bytes (tag included). */
export function fieldsOf(buf: Buffer): { field: number; bytes: Buffer }[] {
  const out: { field: number; bytes: Buffer }[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [tag, afterTag] = readVarint(buf, pos);
    pos = afterTag;
    switch (tag & 7) {
      case 0:
        pos = readVarint(buf, pos)[1];
        break;
      case 2: {
        const [len, afterLen] = readVarint(buf, pos);
        pos = afterLen + len;
        break;
      }
      default:
        throw new Error(`unexpected wire type in test data: ${tag & 7}`);
    }
    out.push({ field: Math.floor(tag / 8), bytes: buf.subarray(start, pos) });
  }
  return out;
}

/** `buf` with every occurrence of top-level field `field` removed. */
export function withoutField(buf: Buffer, field: number): Buffer {
  const kept = fieldsOf(buf).filter((f) => f.field !== field);
  if (kept.length === fieldsOf(buf).length) throw new Error(`field ${field} not in test data`);
  return Buffer.concat(kept.map((f) => f.bytes));
}

/** Assert that `fn` throws a KiteqError with `code` whose message matches `message`. */
export function expectKiteqError(fn: () => unknown, code: ErrorCode, message?: RegExp | string): KiteqError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(KiteqError);
  const err = thrown as KiteqError;
  expect(err.code).toBe(code);
  if (message !== undefined) expect(err.message).toMatch(message);
  return err;
}
