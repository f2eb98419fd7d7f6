import { describe, expect, it } from "vitest";
import { compileGoRegexp } from "../../../src/binding/go-regexp.js";

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
];

describe("Go regular expressions", () => {
  it.each(CASES)("MatchString(%j, %j) is %s", (pattern, input, expected) => {
    expect(compileGoRegexp(pattern).test(input)).toBe(expected);
  });

  it.each([
    ["(a)\\1", /back-reference/],
    ["(?=a)", /lookahead/],
    ["(?!a)", /lookahead/],
    ["(?<=a)b", /lookbehind/],
    ["(?<!a)b", /lookbehind/],
    ["(?U)a+", /ungreedy/],
    ["a(?i)b", /only supported at the start/],
    ["(?i:a)", /only supported at the start/],
    ["[[:^alpha:]]", /negated POSIX/],
    ["[[:nope:]]", /invalid character class/],
    ["\\C", /not supported/],
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

  it("compiles without g or y, so test() has no state", () => {
    const re = compileGoRegexp("a");
    expect(re.flags).not.toMatch(/[gy]/);
    expect(re.test("a")).toBe(true);
    expect(re.test("a")).toBe(true);
  });
});
