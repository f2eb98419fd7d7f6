import { pino } from "pino";

/** The broker's logger type; child loggers carry node, connection, topic and message id. */
export type Logger = pino.Logger;

/**
 * Root logger. JSON lines on stdout (pino's format, so any log shipper reads them);
 * level from KITEQ_LOG_LEVEL (default info; tests default to silent).
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  const level =
    options.level ?? process.env.KITEQ_LOG_LEVEL ?? (process.env.VITEST === "true" ? "silent" : "info");
  return pino({ level, name: options.name ?? "kiteq-pg", base: { pid: process.pid } });
}

/** A logger that writes nothing, for library use without a configured logger. */
export const silentLogger: Logger = pino({ level: "silent" });
