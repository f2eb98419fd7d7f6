/**
 * Node.js flags a broker process is started with (npm start, the Docker image, the bench).
 *
 * Why: a broker allocates tens of KB per message (decoded publishes, statement parameters,
 * results, encoded pushes, acks): at 5,000 msg/s to 4 groups ~170 MB/s. With 32 MiB semi-spaces
 * and a 128 MiB initial old generation (these flags before) the scavenger stopped it for 3-6 ms
 * every ~0.2 s, and what it promoted brought a 3-9 ms major GC every few seconds; both showed in the p99
 * publish-to-deliver latency. 128 MiB semi-spaces and a 256 MiB initial old generation, measured
 * in `npm run bench -- e2e` at 4 groups x 5,000/s (alternated with 32 / 128): p99 median 11.3 ms
 * (9.9-12.9) against 13.3 (12.0-15.6), max 17.7-21.9 against 20.9-38.8 ms; peak RSS 246-283 MiB
 * against 193-240. V8 reads them only at start (v8.setFlagsFromString later changes nothing), so
 * they cannot be set from code.
 */
export const BROKER_NODE_FLAGS: readonly string[] = Object.freeze([
  "--initial-old-space-size=256",
  "--max-semi-space-size=128",
]);

/** The BROKER_NODE_FLAGS this process was not started with (empty when all are there). */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  const given = new Set(execArgv.map((a) => a.split("=")[0]));
  return BROKER_NODE_FLAGS.filter((f) => !given.has(f.split("=")[0]!));
}
