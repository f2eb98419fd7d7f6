import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { boolArray, numberArray, textArray } from "../../src/store/pg-arrays.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

describe("array literals against PostgreSQL", () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  beforeAll(async () => {
    db = await createTestDatabase();
    pool = db.pool;
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("text[] round-trips any string, NULL and the empty array", async () => {
    const values = [
      "plain",
      "",
      "NULL",
      "null",
      'quo"te',
      "back\\slash",
      '\\"',
      "a,b",
      "{braces}",
      " spaced ",
      "tab\tnl\n",
      "ünïcødé ✓",
      null,
    ];
    const { rows } = await pool.query<{ v: (string | null)[] }>("SELECT $1::text[] AS v", [
      textArray(values),
    ]);
    expect(rows[0]!.v).toEqual(values);
    const empty = await pool.query<{ v: string[] }>("SELECT $1::text[] AS v", [textArray([])]);
    expect(empty.rows[0]!.v).toEqual([]);
  });

  it("bigint[], float8[] and bool[] round-trip", async () => {
    const ints = [0, 1, -7, 2 ** 53 - 1];
    const floats = [0, 1.5, -2.25, 1764000000.123456];
    const bools = [true, false, true];
    const { rows } = await pool.query<{ i: string[]; f: number[]; b: boolean[] }>(
      "SELECT $1::bigint[] AS i, $2::float8[] AS f, $3::bool[] AS b",
      [numberArray(ints), numberArray(floats), boolArray(bools)],
    );
    expect(rows[0]!.i.map(Number)).toEqual(ints);
    expect(rows[0]!.f).toEqual(floats);
    expect(rows[0]!.b).toEqual(bools);
  });

  it("refuses a number that has no literal", () => {
    expect(() => numberArray([1, Number.NaN])).toThrow(TypeError);
    expect(() => numberArray([Number.POSITIVE_INFINITY])).toThrow(TypeError);
  });
});
