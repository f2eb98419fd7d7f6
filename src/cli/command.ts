/**
 * What every CLI command is: a name (one or two words), its flags, a usage text and a run
 * function that returns the exit code.
 */
import type { BrokerConfig } from "../config/types.js";
import type { Logger } from "../log.js";
import type { CliFlag, CommandArgs } from "./args.js";
import type { Output } from "./output.js";

/** What a command runs with. */
export interface CommandContext {
  readonly config: BrokerConfig;
  readonly log: Logger;
  readonly args: CommandArgs;
  readonly out: Output;
  /** The command's one positional argument, when it takes one (Command.argument). */
  readonly argument?: string;
}

/** One command of `kiteq-pg`. */
export interface Command {
  /** e.g. "serve", "bind add". */
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** The synopsis lines after `kiteq-pg` (flags of the command only). */
  readonly usage: readonly string[];
  /** The CLI flags it takes (config flags are always accepted). */
  readonly flags: readonly CliFlag[];
  /** Logs to stdout as JSON lines (serve); the others log to stderr, warnings only by default. */
  readonly logsToStdout?: boolean;
  /** Its log lines name the node (`node`: its id): serve only, the others are not a node. */
  readonly isNode?: boolean;
  /** Name of the one positional argument it takes (`explain <messageId>`), if any. */
  readonly argument?: string;
  run(ctx: CommandContext): Promise<number>;
}
