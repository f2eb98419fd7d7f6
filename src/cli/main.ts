#!/usr/bin/env node
import path from "node:path";
/**
 * kiteq-pg command line: `serve` (default) runs a broker node, `migrate` applies migrations.
 * Config flags (KiteQ's -bind, -clusterName, -configPath and our --long forms) go anywhere.
 */
import { CONFIG_ERROR_EXIT_CODE, formatConfigError, loadConfig, parseFlags } from "../config/index.js";
import type { BrokerConfig } from "../config/types.js";
import { ErrorCode, KiteqError, toKiteqError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";
import { Broker } from "../server/broker.js";
import { createPool, ensurePartitions, runMigrations } from "../store/db.js";
import { startEmbeddedPostgres } from "../store/embedded.js";

const USAGE = `usage: kiteq-pg [serve|migrate] [flags]
  serve     run a broker node (default)
  migrate   apply database migrations and exit
flags: -bind host:port  -clusterName NAME  -configPath FILE  --db postgres://...  --data-dir DIR
       --registry static|zk://host:port  --topics a,b  --log-level LEVEL  (see README)`;

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseFlags>;
  let config: BrokerConfig;
  let warnings: string[];
  try {
    parsed = parseFlags(argv, ["help", "h"]);
    if (parsed.flags.help !== undefined || parsed.flags.h !== undefined) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    ({ config, warnings } = loadConfig(parsed.configArgs, process.env));
  } catch (err) {
    process.stderr.write(`${formatConfigError(err)}\n`);
    return CONFIG_ERROR_EXIT_CODE;
  }
  const command = parsed.positionals[0] ?? "serve";
  const log = createLogger({ level: config.logLevel }).child({ node: config.nodeId });
  for (const w of warnings) log.warn({ code: ErrorCode.ConfigInvalid }, w);
  switch (command) {
    case "serve":
      return serve(config, log);
    case "migrate":
      return migrate(config, log);
    default:
      process.stderr.write(`kiteq-pg: unknown command "${command}"\n${USAGE}\n`);
      return CONFIG_ERROR_EXIT_CODE;
  }
}

async function serve(config: BrokerConfig, log: Logger): Promise<number> {
  const broker = await Broker.start(config, log);
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log.warn({ signal }, "second signal: exiting without a clean shutdown");
        process.exit(1);
      }
      log.info({ signal }, "shutting down");
      broker.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err: toKiteqError(err).message }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

async function migrate(config: BrokerConfig, log: Logger): Promise<number> {
  const embedded =
    config.databaseUrl === null
      ? await startEmbeddedPostgres({ dataDir: path.join(config.dataDir, "pg"), logger: log })
      : undefined;
  const pool = createPool(config.databaseUrl ?? embedded!.url("kiteq"), { max: 2 });
  try {
    await runMigrations(pool, log);
    await ensurePartitions(pool, new Date());
    log.info("migrations applied");
    return 0;
  } finally {
    await pool.end();
    await embedded?.stop();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const e = toKiteqError(err);
    process.stderr.write(`kiteq-pg: ${e instanceof KiteqError ? e.describe() : String(err)}\n`);
    process.exit(1);
  },
);
