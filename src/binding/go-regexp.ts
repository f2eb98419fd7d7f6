/**
 * KiteQ matches Regx bindings with Go's `regexp.MatchString(pattern, messageType)`: RE2 syntax,
 * unanchored search. This module translates a Go pattern into a JavaScript RegExp (always with
 * the `u` flag, so it works on code points like Go works on runes) with the same meaning.
 *
 * Translated: a leading flag group `(?ims)`; `(?P<name>`; `\A`, `\z`; `\Q...\E`; `\x{HHHH}`;
 * octal escapes; `\pL` and `\p{Greek}` (scripts become `\p{Script=Greek}`); POSIX classes such
 * as `[[:alpha:]]`; Go's ASCII-only `\s`; `.` (never matches `\n` unless `s`); `^`/`$` in `m`
 * mode (only `\n` separates lines in Go); punctuation escapes Go allows but `u` mode refuses
 * (`\-`, `\_`, ...); a literal `{`, `}` or `]` that is not a repetition or a class end.
 *
 * Refused, as Go refuses them: back-references, lookahead and lookbehind. Refused because
 * JavaScript cannot express them here: the `U` (ungreedy) flag, flags after the start of the
 * pattern, `\C`, negated POSIX classes. A refusal throws SyntaxError with the reason.
 */

const JS_SYNTAX_CHARS = new Set("^$\\.*+?()[]{}|/");

/** Go's ASCII classes, as the body of a JavaScript character class. */
const POSIX_CLASSES: Readonly<Record<string, string>> = {
  alnum: "0-9A-Za-z",
  alpha: "A-Za-z",
  ascii: "\\x00-\\x7F",
  blank: "\\t ",
  cntrl: "\\x00-\\x1F\\x7F",
  digit: "0-9",
  graph: "!-~",
  lower: "a-z",
  print: " -~",
  punct: "!-\\/:-@\\[-`{-~",
  space: "\\t\\n\\v\\f\\r ",
  upper: "A-Z",
  word: "0-9A-Za-z_",
  xdigit: "0-9A-Fa-f",
};

/** Go's `\s`: ASCII whitespace only (JavaScript's `\s` also matches Unicode spaces and `\v`). */
const GO_SPACE = "\\t\\n\\f\\r ";

interface Flags {
  i: boolean;
  m: boolean;
  s: boolean;
}

/**
 * Compile a Go (RE2) regular expression into an equivalent JavaScript RegExp for `test()`.
 * Throws SyntaxError when the pattern is invalid or uses syntax that cannot be translated.
 */
export function compileGoRegexp(pattern: string): RegExp {
  const { source, flags } = translateGoRegexp(pattern);
  return new RegExp(source, `u${flags.i ? "i" : ""}${flags.s ? "s" : ""}`);
}

function translateGoRegexp(pattern: string): { source: string; flags: Flags } {
  const flags: Flags = { i: false, m: false, s: false };
  let pos = readLeadingFlags(pattern, flags);
  let out = "";
  let inClass = false;
  let classStart = false; // the next char is the first of a class (a "]" there is literal)
  while (pos < pattern.length) {
    const c = pattern[pos] as string;
    if (c === "\\") {
      const [text, next] = translateEscape(pattern, pos, inClass);
      out += text;
      pos = next;
      classStart = false;
      continue;
    }
    if (inClass) {
      if (c === "[" && pattern.startsWith("[:", pos)) {
        const [text, next] = translatePosixClass(pattern, pos);
        out += text;
        pos = next;
      } else if (c === "]" && !classStart) {
        out += "]";
        inClass = false;
        pos++;
      } else {
        out += c === "[" || c === "]" ? `\\${c}` : c;
        pos++;
      }
      classStart = false;
      continue;
    }
    switch (c) {
      case "[":
        inClass = true;
        classStart = true;
        out += "[";
        pos++;
        if (pattern[pos] === "^") {
          out += "^";
          pos++;
        }
        continue;
      case "(": {
        const [text, next] = translateGroupOpen(pattern, pos);
        out += text;
        pos = next;
        continue;
      }
      case ".":
        out += flags.s ? "." : "[^\\n]";
        break;
      case "^":
        out += flags.m ? "(?<![^\\n])" : "^";
        break;
      case "$":
        out += flags.m ? "(?![^\\n])" : "$";
        break;
      case "{": {
        const repeat = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(pos));
        if (repeat) {
          const min = Number(repeat[1]);
          const max = repeat[3] ? Number(repeat[3]) : min;
          if (min > 1000 || max > 1000) throw new SyntaxError(`invalid repeat count ${repeat[0]}`);
          out += repeat[0];
          pos += repeat[0].length;
          continue;
        }
        out += "\\{";
        break;
      }
      case "}":
      case "]":
        out += `\\${c}`;
        break;
      default:
        out += c;
    }
    pos++;
  }
  if (inClass) throw new SyntaxError("missing closing ]");
  return { source: out, flags };
}

/** Consume `(?flags)` groups at the very start of the pattern. */
function readLeadingFlags(pattern: string, flags: Flags): number {
  let pos = 0;
  for (;;) {
    const m = /^\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?\)/.exec(pattern.slice(pos));
    if (!m) return pos;
    if (m[2] === "") throw new SyntaxError(`invalid or unsupported Perl syntax ${m[0]}`);
    for (const [letters, value] of [
      [m[1] ?? "", true],
      [m[2] ?? "", false],
    ] as const) {
      for (const f of letters) {
        if (f === "i" || f === "m" || f === "s") flags[f] = value;
        else if (f === "U") throw new SyntaxError("the U (ungreedy) flag is not supported");
        else throw new SyntaxError(`invalid flag ${f}`);
      }
    }
    pos += m[0].length;
  }
}

function translateGroupOpen(pattern: string, pos: number): [string, number] {
  if (pattern[pos + 1] !== "?") return ["(", pos + 1];
  const rest = pattern.slice(pos);
  if (rest.startsWith("(?:")) return ["(?:", pos + 3];
  if (rest.startsWith("(?)")) return ["", pos + 3]; // an empty flag group changes nothing
  if (rest.startsWith("(?P<")) return ["(?<", pos + 4];
  if (rest.startsWith("(?=") || rest.startsWith("(?!")) {
    throw new SyntaxError("lookahead is not supported by Go regular expressions");
  }
  if (rest.startsWith("(?<=") || rest.startsWith("(?<!")) {
    throw new SyntaxError("lookbehind is not supported by Go regular expressions");
  }
  if (rest.startsWith("(?<")) return ["(?<", pos + 3];
  throw new SyntaxError("flags are only supported at the start of the pattern");
}

function translatePosixClass(pattern: string, pos: number): [string, number] {
  const end = pattern.indexOf(":]", pos + 2);
  if (end < 0) return ["\\[", pos + 1]; // a literal "[" followed by ":"
  const name = pattern.slice(pos + 2, end);
  if (name.startsWith("^")) throw new SyntaxError(`negated POSIX class [:${name}:] is not supported`);
  const body = POSIX_CLASSES[name];
  if (body === undefined) throw new SyntaxError(`invalid character class range [:${name}:]`);
  return [body, end + 2];
}

function translateEscape(pattern: string, pos: number, inClass: boolean): [string, number] {
  const d = pattern[pos + 1];
  if (d === undefined) throw new SyntaxError("trailing backslash at end of expression");
  const after = pos + 2;
  switch (d) {
    case "Q": {
      const end = pattern.indexOf("\\E", after);
      const literal = pattern.slice(after, end < 0 ? pattern.length : end);
      const escaped = [...literal].map((ch) =>
        JS_SYNTAX_CHARS.has(ch) || (ch === "-" && inClass) ? `\\${ch}` : ch,
      );
      return [escaped.join(""), end < 0 ? pattern.length : end + 2];
    }
    case "E":
      return ["", after]; // a stray \E is ignored by Go
    case "A":
    case "z":
      if (inClass) throw new SyntaxError(`invalid escape \\${d} in character class`);
      return [d === "A" ? "(?<![\\s\\S])" : "(?![\\s\\S])", after];
    case "x": {
      if (pattern[after] === "{") {
        const m = /^\{([0-9A-Fa-f]{1,6})\}/.exec(pattern.slice(after));
        if (!m) throw new SyntaxError("invalid escape \\x{...}");
        return [`\\u{${m[1]}}`, after + m[0].length];
      }
      const hex = pattern.slice(after, after + 2);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new SyntaxError("invalid escape \\x");
      return [`\\x${hex}`, after + 2];
    }
    case "p":
    case "P":
      return translateUnicodeClass(pattern, pos, d);
    case "s":
      return [inClass ? GO_SPACE : `[${GO_SPACE}]`, after];
    case "S":
      return [inClass ? "\\S" : `[^${GO_SPACE}]`, after];
    case "a":
      return ["\\x07", after];
    case "C":
      throw new SyntaxError("\\C (any byte) is not supported");
    case "8":
    case "9":
      throw new SyntaxError(`invalid escape \\${d}`);
  }
  if (d >= "0" && d <= "7") {
    const m = /^[0-7]{1,3}/.exec(pattern.slice(pos + 1)) as RegExpExecArray;
    if (d !== "0" && m[0].length === 1) {
      throw new SyntaxError(`back-reference \\${d} is not supported by Go regular expressions`);
    }
    return [`\\u{${Number.parseInt(m[0], 8).toString(16)}}`, pos + 1 + m[0].length];
  }
  if ((d === "b" || d === "B") && inClass) throw new SyntaxError(`invalid escape \\${d} in character class`);
  if ("dDwWbBfnrtv".includes(d)) return [`\\${d}`, after];
  if (d < "\x80" && !/[0-9A-Za-z]/.test(d)) {
    // Go accepts an escaped ASCII punctuation character as that character.
    if (JS_SYNTAX_CHARS.has(d) || (d === "-" && inClass)) return [`\\${d}`, after];
    return [d, after];
  }
  throw new SyntaxError(`invalid escape \\${d}`);
}

function translateUnicodeClass(pattern: string, pos: number, d: "p" | "P"): [string, number] {
  let negate = d === "P";
  let name: string;
  let next: number;
  if (pattern[pos + 2] === "{") {
    const end = pattern.indexOf("}", pos + 3);
    if (end < 0) throw new SyntaxError("invalid character class range: missing }");
    name = pattern.slice(pos + 3, end);
    next = end + 1;
    if (name.startsWith("^")) {
      negate = !negate;
      name = name.slice(1);
    }
  } else {
    name = pattern[pos + 2] ?? "";
    next = pos + 3;
  }
  if (!/^[A-Za-z_]+$/.test(name)) throw new SyntaxError(`invalid character class range \\${d}${name}`);
  // One or two letters are general categories (L, Lu, Nd); "Any" is a binary property in both;
  // everything else Go accepts there is a script name.
  const property = /^[A-Z][a-z]?$/.test(name) || name === "Any" ? name : `Script=${name}`;
  return [`\\${negate ? "P" : "p"}{${property}}`, next];
}
