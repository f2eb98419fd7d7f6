import { pino } from "pino";

/** The broker's logger type; child loggers carry node, connection, topic and message id. */
export type Logger = pino.Logger;

/**
 * Root logger: JSON lines on stdout (pino's format, so any log shipper reads them), or readable
 * lines through pino-pretty when stdout is a terminal (KITEQ_LOG_FORMAT=json|pretty overrides).
 * Level from the option, else KITEQ_LOG_LEVEL, else info (tests default to silent).
 */
export function createLogger(options: { level?: string; name?: string; destination?: 1 | 2 } = {}): Logger {
  const level =
    options.level ?? process.env.KITEQ_LOG_LEVEL ?? (process.env.VITEST === "true" ? "silent" : "info");
  const fd = options.destination ?? 1;
  const asked = process.env.KITEQ_LOG_FORMAT;
  // An unknown value is ignored (config/env.ts warns about it).
  const format =
    asked === "json" || asked === "pretty" ? asked : fd === 1 && process.stdout.isTTY ? "pretty" : "json";
  const base = { level, name: options.name ?? "kiteq-pg", base: { pid: process.pid } };
  if (format === "pretty") {
    return pino({
      ...base,
      transport: {
        target: "pino-pretty",
        options: { destination: fd, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,name" },
      },
    });
  }
  // stdout as pino makes it by default (asynchronous), stderr synchronous (one-shot commands).
  const destination = pino.destination({ dest: fd, sync: fd === 2, minLength: 0 });
  destination.on("error", () => stopWriting(destination));
  return pino(base, destination);
}

/**
 * A log destination that failed (the terminal closed: EIO; pino already does this for EPIPE)
 * writes nothing more. Without it the error was thrown from a log call, and pino's flush at exit
 * retried the write for ever: a node whose terminal closed never exited.
 */
function stopWriting(destination: ReturnType<typeof pino.destination>): void {
  const noop = () => undefined;
  Object.assign(destination, {
    write: () => true,
    flush: (cb?: (err?: Error) => void) => cb?.(),
    flushSync: noop,
    end: noop,
    destroy: noop,
  });
}

/** A logger that writes nothing, for library use without a configured logger. */
export const silentLogger: Logger = pino({ level: "silent" });
