import { describe, expect, it } from "vitest";
import { compileGoRegexp, GoRegexpSyntaxError, MAX_PROGRAM_SIZE } from "../../../src/binding/go-regexp.js";

/** [pattern, input, what Go's regexp.MatchString(pattern, input) returns] */
const CASES: [string, string, boolean][] = [
  ["pay", "pay-succ", true],
  ["^pay$", "pay-succ", false],
  ["pay-(succ|fail)", "x-pay-fail", true],
  // Leading flags.
  ["(?i)PAY", "pay", true],
  ["PAY", "pay", false],
  ["(?s)a.b", "a\nb", true],
  ["a.b", "a\nb", false],
  ["a.b", "a\rb", true], // Go's "." excludes only \n; JavaScript's also excludes \r
  ["(?m)^b$", "a\nb\nc", true],
  ["^b$", "a\nb\nc", false],
  ["(?m)^b$", "a\rb\rc", false], // only \n separates lines in Go
  ["(?i-s)A.B", "a\nb", false],
  // Named groups, text anchors, quoting.
  ["(?P<kind>succ|fail)-\\d+", "pay-succ-200", true],
  ["\\Apay", "pay", true],
  ["\\Apay", "xpay", false],
  ["pay\\z", "pay", true],
  ["pay\\z", "pay\n", false],
  ["\\Qa.b\\E", "a.b", true],
  ["\\Qa.b\\E", "axb", false],
  ["\\Qa.b", "a.b", true],
  // Escapes Go allows and JavaScript's u mode does not.
  ["pay\\-succ", "pay-succ", true],
  ["a\\_b", "a_b", true],
  ["[\\-a]", "-", true],
  ["\\x{41}", "A", true],
  ["\\x41", "A", true],
  ["\\101", "A", true],
  ["\\0", "\u0000", true],
  ["\\a", "\u0007", true],
  // Go's \s is ASCII only.
  ["a\\sb", "a b", true],
  ["a\\sb", "a\u00a0b", false],
  ["a\\Sb", "a\u00a0b", true],
  ["[\\s]", "\t", true],
  // POSIX classes.
  ["^[[:alpha:]]+$", "Pay", true],
  ["^[[:alpha:]]+$", "Pay1", false],
  ["^[[:digit:][:upper:]]+$", "A1", true],
  ["^[^[:digit:]]$", "a", true],
  ["^[^[:digit:]]$", "1", false],
  // Unicode classes.
  ["^\\pL+$", "Zahlung", true],
  ["^\\pL+$", "pay1", false],
  ["^\\p{Greek}+$", "αβγ", true],
  ["^\\p{Greek}+$", "abc", false],
  ["^\\P{Greek}+$", "abc", true],
  ["^\\p{^Greek}+$", "abc", true],
  ["^\\p{Lu}", "Pay", true],
  // Literal braces and brackets, repetitions.
  ["a{", "a{", true],
  ["a{,2}", "a{,2}", true],
  ["}", "}", true],
  ["a]", "a]", true],
  ["[]a]", "]", true],
  ["[]a]", "a", true],
  ["^a{2,3}$", "aaa", true],
  ["^a{2,3}$", "aaaa", false],
  ["^a{2,}$", "aaaa", true],
  ["(?)a(?)b", "ab", true],
  // Code points, not UTF-16 units.
  ["^.$", "😀", true],
  ["^[😀]$", "😀", true],
  // Accepted by Go (and now here; the former translation to JavaScript could not express them).
  ["(?U)a+", "aa", true],
  ["a(?i)b", "aB", true],
  ["a(?i)b", "AB", false],
  ["(?i:a)b", "Ab", true],
  ["(?i:a)b", "AB", false],
  ["^[[:^alpha:]]$", "1", true],
  ["^[[:^alpha:]]$", "a", false],
];

describe("Go regular expressions", () => {
  it.each(CASES)("MatchString(%j, %j) is %s", (pattern, input, expected) => {
    expect(compileGoRegexp(pattern).test(input)).toBe(expected);
  });

  it.each([
    ["(a)\\1", /invalid escape sequence/], // Go has no back-references
    ["(?=a)", /invalid or unsupported Perl syntax/], // Go has no lookahead
    ["(?!a)", /invalid or unsupported Perl syntax/],
    ["(?<=a)b", /invalid named capture/], // Go has no lookbehind
    ["(?<!a)b", /invalid named capture/],
    ["[[:nope:]]", /invalid character class/],
    ["\\C", /invalid escape sequence/],
    ["\\8", /invalid escape/],
    ["\\e", /invalid escape/],
    ["\\é", /invalid escape/],
    ["a\\", /trailing backslash/],
    ["[a", /missing closing/],
    ["a{1001}", /invalid repeat count/],
    ["(?-)", /invalid or unsupported Perl syntax/],
    ["(?i-)a", /invalid or unsupported Perl syntax/],
    ["[\\b]", /invalid escape/],
    ["(", /.+/],
    ["a**", /.+/],
  ])("refuses %j", (pattern, message) => {
    expect(() => compileGoRegexp(pattern)).toThrow(message);
  });

  it("test() has no state (no lastIndex as with a g or y RegExp)", () => {
    const re = compileGoRegexp("a");
    expect(re.source).toBe("a");
    expect(re.test("a")).toBe(true);
    expect(re.test("a")).toBe(true);
  });

  it("refuses a pattern whose program is too large", () => {
    expect(() =>
      compileGoRegexp(
        "[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}x",
      ),
    ).toThrow(GoRegexpSyntaxError);
    expect(MAX_PROGRAM_SIZE).toBeGreaterThanOrEqual(1000);
  });

  it.each([
    ["(a+)+$", "a"],
    ["(a|a)+$", "a"],
    ["(a|aa)+$", "a"],
    ["(.*a){12}$", "a"],
    ["^(\\w+\\s?)*$", "word "],
  ])("matches the catastrophic pattern %j in linear time", (pattern, unit) => {
    const re = compileGoRegexp(pattern);
    for (const n of [32, 1000, 100_000]) {
      const input = `${unit.repeat(n)}!`;
      const t0 = performance.now();
      re.test(input);
      // Linear: ~0.1 µs a character; a backtracking engine takes minutes at n = 32 (2^32 paths).
      // Generous: this runs beside other test files at a low priority on 2 cores.
      expect(performance.now() - t0).toBeLessThan(1000 + n / 100);
    }
  });
});
