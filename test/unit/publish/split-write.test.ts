import { describe, expect, it } from "vitest";
import { isDataError } from "../../../src/errors.js";
import { writeSplitting } from "../../../src/publish/split-write.js";

/** An error shaped like node-postgres's DatabaseError (SQLSTATE in `code`). */
const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });
const NUL = () => pgError("22021", 'invalid byte sequence for encoding "UTF8": 0x00');

/** A writer that fails any batch holding a bad item (like one statement per batch does). */
function writer(bad: (n: number) => boolean, err: () => unknown = NUL) {
  const calls: number[][] = [];
  const write = async (items: number[]) => {
    calls.push(items);
    if (items.some(bad)) throw err();
    return items.map((n) => n * 10);
  };
  return { calls, write };
}

describe("writeSplitting", () => {
  it("writes a good batch once", async () => {
    const w = writer(() => false);
    const out = await writeSplitting([1, 2, 3], w.write, { splittable: isDataError });
    expect(out).toEqual([
      { ok: true, result: 10 },
      { ok: true, result: 20 },
      { ok: true, result: 30 },
    ]);
    expect(w.calls).toEqual([[1, 2, 3]]);
  });

  it("on a data error, refuses only the bad item of 1,000 and stores the 999 others", async () => {
    const items = Array.from({ length: 1000 }, (_, i) => i);
    const w = writer((n) => n === 617);
    let splits = 0;
    const out = await writeSplitting(items, w.write, {
      splittable: isDataError,
      onSplit: () => splits++,
    });
    expect(out.filter((o) => !o.ok)).toHaveLength(1);
    expect(out[617]).toMatchObject({ ok: false, error: { code: "22021" } });
    expect(out[616]).toEqual({ ok: true, result: 6160 });
    // One outcome per item, in order; about 2·log2(1000) statements.
    expect(out).toHaveLength(1000);
    expect(out.every((o, i) => i === 617 || (o.ok && o.result === i * 10))).toBe(true);
    expect(w.calls.length).toBeLessThanOrEqual(1 + 2 * 10);
    expect(splits).toBe(10);
    // What was stored was written exactly once.
    const stored = w.calls.filter((c) => !c.includes(617)).flat();
    expect(stored.sort((a, b) => a - b)).toEqual(items.filter((n) => n !== 617));
  });

  it("isolates several bad items (integrity and program-limit errors too)", async () => {
    for (const code of ["23505", "54000", "22P05", "22007"]) {
      const w = writer(
        (n) => n % 7 === 3,
        () => pgError(code, "bad row"),
      );
      const out = await writeSplitting(
        Array.from({ length: 50 }, (_, i) => i),
        w.write,
        { splittable: isDataError },
      );
      expect(
        out
          .map((o, i) => [i, o.ok])
          .filter(([, ok]) => !ok)
          .map(([i]) => i),
      ).toEqual([3, 10, 17, 24, 31, 38, 45]);
    }
  });

  it("does not split a connection loss or a database that is down: one attempt, the batch fails", async () => {
    for (const err of [
      pgError("57P01", "terminating connection due to administrator command"),
      pgError("08006", "connection failure"),
      pgError("53300", "too many connections"),
      pgError("40001", "could not serialize access"),
      Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }),
      new Error("Connection terminated unexpectedly"),
      pgError("P0001", "raised by a trigger"),
    ]) {
      const w = writer(
        () => true,
        () => err,
      );
      await expect(
        writeSplitting(
          Array.from({ length: 1000 }, (_, i) => i),
          w.write,
          { splittable: isDataError },
        ),
      ).rejects.toBe(err);
      expect(w.calls).toHaveLength(1);
    }
  });

  it("stops splitting when the database goes away during a split: the rest fails without more statements", async () => {
    let calls = 0;
    const down = pgError("57P01", "terminating connection");
    const write = async (items: number[]) => {
      calls++;
      if (calls === 1) throw NUL();
      if (calls === 2) return items.map((n) => n);
      throw down;
    };
    const out = await writeSplitting(
      Array.from({ length: 1000 }, (_, i) => i),
      write,
      { splittable: isDataError },
    );
    // First half stored, second half tried once and failed with the connection error.
    expect(calls).toBe(3);
    expect(out.slice(0, 500).every((o) => o.ok)).toBe(true);
    expect(out.slice(500).every((o) => !o.ok && o.error === down)).toBe(true);
  });
});

describe("isDataError", () => {
  it("matches SQLSTATE classes 22, 23 and 54 by code, never by text", () => {
    expect(isDataError(pgError("22021", "x"))).toBe(true);
    expect(isDataError(pgError("23514", "x"))).toBe(true);
    expect(isDataError(pgError("54000", "x"))).toBe(true);
    expect(isDataError(pgError("08006", "invalid byte sequence"))).toBe(false);
    expect(isDataError(new Error('invalid byte sequence for encoding "UTF8": 0x00'))).toBe(false);
    expect(isDataError(undefined)).toBe(false);
  });
});
