/**
 * `kiteq-pg serve` (run a broker node) and `kiteq-pg migrate` (apply migrations and exit).
 */
import path from "node:path";
import { CONFIG_ERROR_EXIT_CODE } from "../config/load.js";
import { ErrorCode, KiteqError, toKiteqError } from "../errors.js";
// The broker (and through it protobufjs, ZooKeeper, prom-client...) is loaded by serve only:
// the other commands start in a fraction of the time (--help took 1.7 s).
import type { Broker } from "../server/broker.js";
import { createPool, ensurePartitions, runMigrations } from "../store/db.js";
import { startEmbeddedPostgres } from "../store/embedded.js";
import { ShardListMismatch } from "../store/shards.js";
import type { Command } from "./command.js";

/** The same signal again within this many ms is one signal delivered twice (see onSignal). */
const SAME_SIGNAL_MS = 300;

/** `serve`: a broker node until SIGINT/SIGTERM, or SIGHUP in a terminal (a second signal exits at once). */
export const serveCommand: Command = {
  name: "serve",
  summary: "run a broker node (the default command)",
  usage: ["serve [config flags]"],
  flags: [],
  logsToStdout: true,
  isNode: true,
  async run({ config, log, out }) {
    // Signals are handled from the start: one during startup (Ctrl-C while the embedded
    // PostgreSQL initialises or ZooKeeper is awaited) stops what started, the embedded PostgreSQL
    // included, instead of killing the process and leaving it running.
    const startup = new AbortController();
    let broker: Broker | undefined;
    let stopped: ((code: number) => void) | undefined;
    const stopBroker = (b: Broker): Promise<number> =>
      b.stop().then(
        () => 0,
        (err: unknown) => {
          log.error({ err: toKiteqError(err).message }, "shutdown failed");
          return 1;
        },
      );
    let signals = 0;
    let last: { signal: NodeJS.Signals; at: number } | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      // One Ctrl-C can arrive twice: from the terminal to the whole process group, and relayed by
      // a parent launcher (tsx in `npm run cli -- serve`). Not a second signal: ignored.
      const now = Date.now();
      if (last !== undefined && last.signal === signal && now - last.at < SAME_SIGNAL_MS) return;
      last = { signal, at: now };
      signals++;
      if (signals > 1) {
        log.warn({ signal }, "second signal: exiting without a clean shutdown");
        process.exit(1);
      }
      if (broker === undefined) {
        log.info({ signal }, "signal during startup: stopping what has started");
        startup.abort(new KiteqError(ErrorCode.ShuttingDown, `stopped by ${signal} during startup`));
        return;
      }
      log.info({ signal }, "shutting down");
      void stopBroker(broker).then((code) => stopped?.(code));
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    // SIGHUP: the terminal closed. Node.js would exit at once (it resets an inherited "ignore",
    // so even under nohup), leaving the embedded PostgreSQL running and the deliveries in flight
    // to a takeover. In a terminal: a clean stop, as on SIGTERM. With output going elsewhere
    // (nohup, a log file, a service manager): logged and ignored, so `nohup npm start &`
    // outlives the logout it was started for.
    process.on("SIGHUP", () => {
      if (process.stdout.isTTY) onSignal("SIGHUP");
      else
        log.warn(
          { signal: "SIGHUP" },
          "SIGHUP ignored (output is not a terminal): SIGTERM or SIGINT stops the broker",
        );
    });
    try {
      const { Broker: BrokerClass } = await import("../server/broker.js");
      broker = await BrokerClass.start(config, log, { signal: startup.signal });
    } catch (err) {
      if (startup.signal.aborted) {
        log.info("broker stopped during startup");
        return 0;
      }
      // The shard list differs from the store's: one line saying why, exit 2 (a config error).
      if (err instanceof ShardListMismatch) {
        log.error({ code: err.code }, err.message);
        out.err(`kiteq-pg: ${err.message}`);
        return CONFIG_ERROR_EXIT_CODE;
      }
      // A registry file that cannot be read or parsed, a --bind or --admin address that cannot
      // be listened on: config errors too (exit 2, one line).
      if (
        err instanceof KiteqError &&
        err.code === ErrorCode.ConfigInvalid &&
        /registry file|^cannot listen on/.test(err.message)
      ) {
        log.error({ code: err.code }, err.message);
        out.err(`kiteq-pg: ${err.code}: ${err.message}`);
        return CONFIG_ERROR_EXIT_CODE;
      }
      throw err;
    }
    // A signal that came as the start completed.
    if (startup.signal.aborted) return stopBroker(broker);
    return new Promise<number>((resolve) => {
      stopped = resolve;
    });
  },
};

/** `migrate`: apply the migrations and create the history partitions around today. */
export const migrateCommand: Command = {
  name: "migrate",
  summary: "apply database migrations and exit",
  usage: ["migrate [config flags]"],
  flags: [],
  logsToStdout: true,
  async run({ config, log }) {
    const embedded =
      config.databaseUrl === null
        ? await startEmbeddedPostgres({
            dataDir: path.join(config.dataDir, "pg"),
            logger: log,
            port: config.pgPort,
            attachIfRunning: true,
          })
        : undefined;
    // Every shard gets the same schema.
    const urls = config.databaseUrls.length > 0 ? config.databaseUrls : [embedded!.url("kiteq")];
    const pools = urls.map((url) => createPool(url, { max: 2 }));
    try {
      let applied = 0;
      for (const pool of pools) {
        applied += (await runMigrations(pool, log)).length;
        await ensurePartitions(pool, new Date());
      }
      // runMigrations names what it applied; say so when there was nothing to do.
      if (applied === 0) log.info({ shards: pools.length }, "database schema up to date: nothing to apply");
      return 0;
    } finally {
      await Promise.all(pools.map((p) => p.end()));
      await embedded?.stop();
    }
  },
};
