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
  const format = process.env.KITEQ_LOG_FORMAT ?? (fd === 1 && process.stdout.isTTY ? "pretty" : "json");
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
  return fd === 1 ? pino(base) : pino(base, pino.destination({ fd, sync: true }));
}

/** A logger that writes nothing, for library use without a configured logger. */
export const silentLogger: Logger = pino({ level: "silent" });
