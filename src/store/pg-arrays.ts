/**
 * PostgreSQL array literals for array parameters of the hot-path statements, built in one pass.
 *
 * Why: node-postgres turns a JS array parameter into a literal element by element (two regex
 * replaces and a string concatenation each); for the publish and ack batches that was the
 * largest single source of garbage in the broker (30% of its allocations at 20,000 deliveries/s)
 * and so of its GC pauses. A string parameter is passed through unchanged, and the statement's
 * `$n::type[]` cast parses it.
 */

/** `{1,2,3}` for bigint[], int[] or float8[]; every value must be a finite number. */
export function numberArray(values: readonly number[]): string {
  for (const v of values) {
    if (!Number.isFinite(v)) throw new TypeError(`not a finite number in an array parameter: ${v}`);
  }
  return `{${values.join(",")}}`;
}

/** `{1,NULL,3}` for float8[] with NULLs; every other value must be a finite number. */
export function nullableNumberArray(values: readonly (number | null)[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) parts[i] = "NULL";
    else if (!Number.isFinite(v)) throw new TypeError(`not a finite number in an array parameter: ${v}`);
    else parts[i] = String(v);
  }
  return `{${parts.join(",")}}`;
}

/** `{t,f}` for bool[]. */
export function boolArray(values: readonly boolean[]): string {
  let out = "{";
  for (let i = 0; i < values.length; i++) out += i === 0 ? (values[i] ? "t" : "f") : values[i] ? ",t" : ",f";
  return `${out}}`;
}

const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

/** `{"a","b",NULL}` for text[]: every element quoted (so "", "NULL", commas, braces are data). */
export function textArray(values: readonly (string | null)[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) parts[i] = "NULL";
    else parts[i] = NEEDS_ESCAPE.test(v) ? `"${v.replace(ESCAPED, "\\$&")}"` : `"${v}"`;
  }
  return `{${parts.join(",")}}`;
}
