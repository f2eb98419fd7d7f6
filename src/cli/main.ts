#!/usr/bin/env -S node --initial-old-space-size=256 --max-semi-space-size=128
/**
 * kiteq-pg command line: `serve` (default) runs a broker node; the other commands migrate,
 * manage bindings, read the history, redrive dead letters, and send or consume messages.
 * Config flags (KiteQ's -bind, -clusterName, -configPath and our --long forms) go anywhere.
 * Exit codes: 0 done, 1 failed (one line on stderr), 2 usage or configuration error.
 */
import { pino } from "pino";
import { CONFIG_ERROR_EXIT_CODE, formatConfigError, loadConfig, parseFlags } from "../config/index.js";
import type { BrokerConfig } from "../config/types.js";
import { ErrorCode, KiteqError, toKiteqError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";
import { CommandArgs, KNOWN_EXTRA, USAGE_EXIT_CODE, UsageError } from "./args.js";
import { bindAddCommand, bindListCommand, bindRemoveCommand } from "./bind.js";
import { consumeCommand, sendCommand } from "./client.js";
import type { Command } from "./command.js";
import { dbUrlCommand } from "./db-url.js";
import { explainCommand } from "./explain.js";
import { groupsCommand } from "./groups.js";
import { historyCommand } from "./history.js";
import { exitingOnSignal } from "./interrupt.js";
import { processOutput } from "./output.js";
import { redriveCommand } from "./redrive.js";
import { replayCommand } from "./replay.js";
import { migrateCommand, serveCommand } from "./serve.js";

/** Every command, in the order of the help text. */
const COMMANDS: readonly Command[] = [
  serveCommand,
  migrateCommand,
  bindAddCommand,
  bindRemoveCommand,
  bindListCommand,
  historyCommand,
  explainCommand,
  groupsCommand,
  redriveCommand,
  replayCommand,
  sendCommand,
  consumeCommand,
  dbUrlCommand,
];

/** Commands named by two words (`bind add`): their first words. */
const GROUPS = new Set(COMMANDS.filter((c) => c.name.includes(" ")).map((c) => c.name.split(" ")[0]));

const CONFIG_FLAGS = `config flags (every command): --db postgres://...  --data-dir DIR (embedded PostgreSQL, default ./data)
  -bind host:port  -clusterName NAME  -configPath FILE  --registry static|zk://host:port  --topics a,b
  --admin host:port|-1  --admin-token TOKEN (KITEQ_ADMIN_TOKEN)  --pg-port PORT  --log-level LEVEL  ... (see README)`;

/** `suites`: the bench's suite names (from its table: a list written here left three out). */
function globalUsage(suites: readonly string[]): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  lines.push(`  ${"bench".padEnd(width)}  benchmarks: ${suites.join(" | ")} (bench --help for their flags)`);
  return `usage: kiteq-pg <command> [flags]   (kiteq-pg <command> --help for its flags; kiteq-pg --version)\n\ncommands:\n${lines.join("\n")}\n\n${CONFIG_FLAGS}`;
}

function commandUsage(commands: readonly Command[]): string {
  const lines = commands.flatMap((c) => c.usage.map((u) => (u.startsWith(" ") ? u : `kiteq-pg ${u}`)));
  return `usage:\n${lines.map((l) => `  ${l}`).join("\n")}\n\n${CONFIG_FLAGS}`;
}

/** The command named by the positionals, and how many positionals its name took. */
function findCommand(positionals: readonly string[]): { command: Command; words: number } {
  const first = positionals[0] ?? "serve";
  if (GROUPS.has(first)) {
    const sub = positionals[1];
    const subs = COMMANDS.filter((c) => c.name.startsWith(`${first} `)).map((c) => c.name.split(" ")[1]);
    const command = COMMANDS.find((c) => c.name === `${first} ${sub}`);
    if (command === undefined) {
      throw new UsageError(
        sub === undefined
          ? `${first}: which one? ${subs.join(", ")}`
          : `${first}: unknown subcommand "${sub}" (known: ${subs.join(", ")})`,
      );
    }
    return { command, words: 2 };
  }
  const command = COMMANDS.find((c) => c.name === first);
  if (command === undefined) {
    throw new UsageError(
      `unknown command "${first}" (known: ${COMMANDS.map((c) => c.name).join(", ")}; see kiteq-pg --help)`,
    );
  }
  return { command, words: 1 };
}

/** --help: of the command named (or of the `bind` group), or the command list. */
async function helpText(positionals: readonly string[]): Promise<string> {
  const first = positionals[0];
  if (first !== undefined) {
    const named = COMMANDS.filter((c) => c.name === `${first} ${positionals[1]}` || c.name === first);
    if (named.length > 0) return commandUsage(named);
    const group = COMMANDS.filter((c) => c.name.startsWith(`${first} `));
    if (group.length > 0) return commandUsage(group);
  }
  // Loaded for the command list only: the bench's modules are not every command's start-up cost.
  const { SUITE_NAMES } = await import("../bench/main.js");
  return globalUsage(SUITE_NAMES);
}

/** Logs of one-shot commands go to stderr (stdout is their output), warnings only unless asked. */
function commandLogger(command: Command, config: BrokerConfig, levelGiven: boolean): Logger {
  if (command.logsToStdout === true) {
    const logger = createLogger({ level: config.logLevel });
    // `migrate` is no node: its lines named the default node id (127.0.0.1:13800) all the same.
    return command.isNode === true ? logger.child({ node: config.nodeId }) : logger;
  }
  return pino(
    { level: levelGiven ? config.logLevel : "warn", name: "kiteq-pg", base: { pid: process.pid } },
    pino.destination({ fd: 2, sync: true }),
  );
}

async function main(argv: string[]): Promise<number> {
  // `bench` takes the bench's own flags (it starts its own PostgreSQL and brokers): hand over.
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
    // Which version a node or a CLI runs (the admin API's node list says it for running nodes).
    const { BROKER_VERSION } = await import("../admin/version.js");
    processOutput.out(`kiteq-pg ${BROKER_VERSION}`);
    return 0;
  }
  if (argv[0] === "bench") {
    const { runBench } = await import("../bench/main.js");
    return runBench(argv.slice(1));
  }
  let command: Command;
  let args: CommandArgs;
  let config: BrokerConfig;
  let warnings: string[];
  let levelGiven: boolean;
  let argument: string | undefined;
  try {
    const parsed = parseFlags(argv, KNOWN_EXTRA);
    if (parsed.flags.help !== undefined || parsed.flags.h !== undefined) {
      processOutput.out(await helpText(parsed.positionals));
      return 0;
    }
    const found = findCommand(parsed.positionals);
    command = found.command;
    argument = command.argument === undefined ? undefined : parsed.positionals[found.words];
    const extra = parsed.positionals[found.words + (argument === undefined ? 0 : 1)];
    if (extra !== undefined) throw new UsageError(`${command.name}: unexpected argument "${extra}"`);
    args = new CommandArgs(command.name, parsed.flags, command.flags);
    ({ config, warnings } = loadConfig(parsed.configArgs, process.env, {
      serving: command.name === "serve",
    }));
    levelGiven = parsed.flags.logLevel !== undefined || process.env.KITEQ_LOG_LEVEL !== undefined;
  } catch (err) {
    if (err instanceof UsageError) {
      processOutput.err(`kiteq-pg: ${err.message}`);
      return USAGE_EXIT_CODE;
    }
    processOutput.err(formatConfigError(err));
    return CONFIG_ERROR_EXIT_CODE;
  }
  const log = commandLogger(command, config, levelGiven);
  for (const w of warnings) log.warn({ code: ErrorCode.ConfigInvalid }, w);
  try {
    return await command.run({ config, log, args, out: processOutput, argument });
  } catch (err) {
    if (err instanceof UsageError) {
      processOutput.err(`kiteq-pg: ${err.message}`);
      return USAGE_EXIT_CODE;
    }
    throw err;
  }
}

/**
 * Exit once stdout and stderr have handed everything to the OS: into a pipe they are written
 * asynchronously, and process.exit() right away cut `history --json | jq` at 64 KiB (a pipe's
 * buffer) with exit code 0. A write's callback runs after every earlier write is flushed.
 */
function exitAfterOutput(code: number): void {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write("", done);
  process.stderr.write("", done);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (!exitingOnSignal()) exitAfterOutput(code);
  },
  (err: unknown) => {
    if (exitingOnSignal()) return;
    const e = toKiteqError(err);
    processOutput.err(`kiteq-pg: ${e instanceof KiteqError ? e.describe() : String(err)}`);
    exitAfterOutput(1);
  },
);
