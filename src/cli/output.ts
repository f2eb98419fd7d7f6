/**
 * What the CLI prints: aligned text tables for people, JSON for scripts.
 */

/** A cell: null and undefined print as "-", dates as ISO 8601 (UTC, milliseconds). */
export type Cell = string | number | boolean | Date | null | undefined;

/**
 * `text` on one line: newline, carriage return and tab shown as \n, \r and \t. For values a
 * client chose (names, reasons) inside a line of output: a newline in a message type split the
 * message line of `history --message-id` and `explain` in two.
 */
export function oneLine(text: string): string {
  return text.replace(/[\r\n\t]/g, (c) => (c === "\n" ? "\\n" : c === "\r" ? "\\r" : "\\t"));
}

function cellText(c: Cell): string {
  if (c === null || c === undefined || c === "") return "-";
  if (c instanceof Date) return c.toISOString();
  // Escaped before the columns are measured: escaped after (by the line writer), an ESC widened
  // its cell by three characters and shifted the rest of the row.
  return printable(oneLine(String(c)));
}

/** An aligned table with a header row; the last column is not padded. */
export function formatTable(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const cells = [header.map((h) => h), ...rows.map((r) => r.map(cellText))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => line(r, widths)).join("\n");
}

/**
 * A table written page by page, for reads too large to hold (a group's history): the header and
 * the column widths come from the first page, at least `minWidths` (the widest value a column
 * can hold, where it is known: an event kind); a wider cell later widens only its own row.
 */
export function tableWriter(
  header: readonly string[],
  out: Output,
  minWidths: readonly number[] = [],
): {
  rows(rows: readonly (readonly Cell[])[]): void;
} {
  let widths: number[] | undefined;
  return {
    rows(rows) {
      if (rows.length === 0) return;
      const cells = rows.map((r) => r.map(cellText));
      if (widths === undefined) {
        widths = header.map((h, i) =>
          Math.max(h.length, minWidths[i] ?? 0, ...cells.map((r) => (r[i] ?? "").length)),
        );
        out.out(line(header, widths));
      }
      const w = widths;
      out.out(cells.map((r) => line(r, w)).join("\n"));
    },
  };
}

function line(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
    .join("  ")
    .trimEnd();
}

/**
 * A JSON array written element by element, the same text as formatJson of the whole array (two-
 * space indented), without holding it.
 */
export function jsonArrayWriter(out: Output): { items(items: readonly unknown[]): void; end(): void } {
  let pending: string | undefined;
  let started = false;
  const indent = (v: unknown) =>
    JSON.stringify(v, null, 2)
      .split("\n")
      .map((l) => `  ${l}`)
      .join("\n");
  return {
    items(items) {
      for (const item of items) {
        if (!started) {
          out.out("[");
          started = true;
        }
        if (pending !== undefined) out.out(`${pending},`);
        pending = indent(item);
      }
    },
    end() {
      if (!started) {
        out.out("[]");
        return;
      }
      if (pending !== undefined) out.out(pending);
      out.out("]");
    },
  };
}

/** JSON with dates as ISO strings, two-space indented. */
export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/** Where a command writes: stdout for results, stderr for notes (tests capture both). */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

/**
 * `text` with control characters other than newline and tab shown as \xNN: names come from
 * clients, and an ESC in a group or message type reached the operator's terminal raw (clearing
 * the screen, setting its title, faking lines). JSON output holds none (JSON escapes them).
 */
export function printable(text: string): string {
  return text.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/**
 * Writes to `stream` that stop quietly once its reader has gone (EPIPE: `| head -1` closed the
 * pipe): without an 'error' listener the closed pipe threw an unhandled error with a stack
 * trace, and a redrive stopped after the lines `head` took. The command goes on to its end (what
 * it was asked to do); nothing more is written there.
 */
function lineWriter(stream: NodeJS.WriteStream): (text: string) => void {
  let closed = false;
  let listening = false;
  return (text) => {
    if (closed) return;
    if (!listening) {
      listening = true;
      stream.on("error", (err: NodeJS.ErrnoException) => {
        closed = true;
        // Another write error than a reader gone (a full disk under a redirect): said once.
        if (err.code !== "EPIPE" && stream !== process.stderr) {
          process.stderr.write(`kiteq-pg: output stopped: ${err.message}\n`);
        }
      });
    }
    stream.write(`${printable(text)}\n`);
  };
}

/** The process's stdout and stderr, one line per call. */
export const processOutput: Output = {
  out: lineWriter(process.stdout),
  err: lineWriter(process.stderr),
};

/** What `history` and `explain` say of a message id the history does not hold. */
export function notInHistory(messageId: string): string {
  return `kiteq-pg: no message ${messageId} in the history (never stored, or received longer ago than the history is kept: --retention-days)`;
}
