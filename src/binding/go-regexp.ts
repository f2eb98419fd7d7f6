/**
 * KiteQ matches Regx bindings with Go's `regexp.MatchString(pattern, messageType)`: RE2 syntax,
 * unanchored search. This module compiles the pattern with re2js, a port of RE2 (the same
 * parser and automata as Go's regexp package), so the syntax is exactly Go's and matching takes
 * time linear in the messageType whatever the pattern: `(a+)+$` against `aaaa…!` answers in
 * microseconds, where a backtracking engine (JavaScript's RegExp) takes seconds from ~26
 * characters on and doubles with each one more.
 *
 * Refused, as Go refuses them: back-references, lookahead and lookbehind, invalid escapes and
 * repeat counts over 1000. Refused here beyond Go: a pattern whose compiled program is larger
 * than MAX_PROGRAM_SIZE instructions (a bound on memory and per-character work; a real binding
 * pattern is a few dozen). A refusal throws GoRegexpSyntaxError with Go's message.
 */
import { RE2JS } from "re2js";

/** Largest compiled program accepted (RE2's rough measure of a pattern's cost). */
export const MAX_PROGRAM_SIZE = 10_000;

/** A compiled Go regular expression; `test` is Go's MatchString (unanchored search). */
export interface GoRegexp {
  /** The pattern as given. */
  readonly source: string;
  /** True when the pattern matches somewhere in `input` (linear time in its length). */
  test(input: string): boolean;
}

/** A pattern Go would not compile (or too large a program); the message is Go's. */
export class GoRegexpSyntaxError extends SyntaxError {
  constructor(
    message: string,
    readonly pattern: string,
  ) {
    super(message);
    this.name = "GoRegexpSyntaxError";
  }
}

/**
 * Compile a Go (RE2) regular expression. Throws GoRegexpSyntaxError when the pattern is invalid
 * in Go's syntax or its program exceeds MAX_PROGRAM_SIZE.
 */
export function compileGoRegexp(pattern: string): GoRegexp {
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (err) {
    throw new GoRegexpSyntaxError(err instanceof Error ? err.message : String(err), pattern);
  }
  const size = re.programSize();
  if (size > MAX_PROGRAM_SIZE) {
    throw new GoRegexpSyntaxError(
      `error parsing regexp: expression too large (${size} instructions, at most ${MAX_PROGRAM_SIZE})`,
      pattern,
    );
  }
  return Object.freeze({ source: pattern, test: (input: string) => re.test(input) });
}
