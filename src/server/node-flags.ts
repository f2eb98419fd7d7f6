/**
 * Node.js flags a broker process is started with (npm start, the Docker image, the bench).
 *
 * Why: a broker at a few thousand messages per second promotes a few MB per second of short-
 * lived objects; with V8's default old-generation start size a major GC (4-8 ms pause plus
 * incremental steps of up to 8 ms) then runs every ~0.7 s and sets the p99 publish-to-deliver
 * latency (measured: 16-19 ms at 5,000/s; with this flag 12 ms, and a major GC every several
 * seconds). A 32 MiB young generation (default 16) halves how often the scavenger stops the
 * broker for 2-4 ms (p99 8.4-8.6 ms instead of 10-11). Together they cost ~60 MiB of RSS. V8
 * reads them only at start, so they cannot be set from code.
 */
export const BROKER_NODE_FLAGS: readonly string[] = Object.freeze([
  "--initial-old-space-size=128",
  "--max-semi-space-size=32",
]);

/** The BROKER_NODE_FLAGS this process was not started with (empty when all are there). */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  const given = new Set(execArgv.map((a) => a.split("=")[0]));
  return BROKER_NODE_FLAGS.filter((f) => !given.has(f.split("=")[0]!));
}
