/**
 * `kiteq-pg bind add | remove | list`: the bindings table (source "cli"). Every change sends
 * NOTIFY kiteq_bindings, so running brokers reload their bindings at once.
 */

import {
  BIND_VERSION,
  type Binding,
  BindType,
  bindingsToJson,
  bindTypeName,
  createBinding,
  DEFAULT_WATERMARK,
  MAX_BINDING_WATERMARK,
  refusedPattern,
} from "../binding/binding.js";
import { ErrorCode, KiteqError } from "../errors.js";
import { checkText } from "../publish/validate.js";
import { listBindings, removeBindings, upsertBinding } from "../store/bindings.js";
import { readThrough } from "./admin-client.js";
import { UsageError } from "./args.js";
import type { Command } from "./command.js";
import { formatTable, oneLine } from "./output.js";
import { withStore } from "./store.js";

const BIND_TYPES = ["direct", "regx", "fanout"] as const;

function describeBinding(b: Binding): string {
  const type = bindTypeName(b.bindType);
  const what =
    b.bindType === BindType.Fanout ? "every message type" : `message type ${oneLine(b.messageType)}`;
  // One line: a newline in a name split it into a line that looked like a second binding.
  return `group ${oneLine(b.groupId)} <- topic ${oneLine(b.topic)}, ${what} (${type}, watermark ${b.watermark}/s, ${b.persistent ? "persistent" : "not persistent"})`;
}

/** `bind add`: add or replace one binding. */
export const bindAddCommand: Command = {
  name: "bind add",
  summary: "add (or replace) a group's binding to a topic and message type",
  usage: [
    "bind add --group G --topic T --message-type M [--type direct|regx|fanout] [--watermark N] [--persistent true|false]",
    "  --type defaults to direct (regx: M is a Go regular expression; fanout: every type, M not needed);",
    `  --watermark is the group's delivery rate per second (default 6000; the broker applies at most its --max-watermark, 6000 unless raised); --persistent defaults to true`,
  ],
  flags: ["group", "topic", "message-type", "type", "watermark", "persistent"],
  async run({ config, log, args, out }) {
    const type = args.choice("type", BIND_TYPES, "direct");
    // A Fanout binding takes every message type: a type given with it was dropped in silence
    // (the operator believed the group would get that type only).
    if (type === "fanout" && args.has("message-type")) {
      throw new UsageError(
        `${args.command}: --type fanout takes every message type of the topic: leave out --message-type, or bind with --type direct (that type only) or regx (a pattern)`,
      );
    }
    const bindType = type === "direct" ? BindType.Direct : type === "regx" ? BindType.Regx : BindType.Fanout;
    // A name no publish may carry would make a binding that never matches anything.
    const max = config.publishLimits.maxNameBytes;
    for (const [flag, field] of [
      ["group", "groupId"],
      ["topic", "topic"],
      ...(type === "direct" ? [["message-type", "messageType"] as const] : []),
    ] as const) {
      const value = args.optional(flag);
      const problem = value === undefined ? undefined : checkText(field, value, max);
      if (problem !== undefined) {
        throw new UsageError(
          `${args.command}: --${flag}: ${problem} (a publish carrying it would be refused)`,
        );
      }
    }
    let binding: Binding;
    try {
      binding = createBinding({
        groupId: args.required("group"),
        topic: args.required("topic"),
        messageType: type === "fanout" ? undefined : args.required("message-type"),
        bindType,
        version: BIND_VERSION,
        watermark: args.int("watermark", DEFAULT_WATERMARK, 1, MAX_BINDING_WATERMARK),
        persistent: args.bool("persistent", true),
      });
    } catch (err) {
      const refused = refusedPattern(err);
      if (refused !== undefined) {
        // Refused before anything is written: the table (and every other binding) is unchanged.
        throw new UsageError(
          `${args.command}: group ${refused.groupId} topic ${refused.topic}: Regx pattern ${JSON.stringify(refused.pattern)} refused: ${refused.error.message}`,
        );
      }
      if (err instanceof KiteqError && err.code === ErrorCode.BindingInvalid) {
        throw new UsageError(`${args.command}: ${err.message}`);
      }
      throw err;
    }
    await withStore(config, log, (pool) => upsertBinding(pool, binding, "cli", new Date()));
    out.out(`bound ${describeBinding(binding)}`);
    return 0;
  },
};

/** `bind remove`: remove a group's bindings to a topic (one message type, or all). */
export const bindRemoveCommand: Command = {
  name: "bind remove",
  summary: "remove a group's bindings to a topic (all message types, or one)",
  usage: ["bind remove --group G --topic T [--message-type M]"],
  flags: ["group", "topic", "message-type"],
  async run({ config, log, args, out }) {
    const groupId = args.required("group");
    const topic = args.required("topic");
    const messageType = args.optional("message-type");
    const removed = await withStore(config, log, (pool) =>
      removeBindings(pool, { groupId, topic, messageType }),
    );
    if (removed === 0) {
      const what = messageType === undefined ? "" : ` with message type ${messageType}`;
      out.err(`kiteq-pg: no binding of group ${groupId} to topic ${topic}${what}`);
      return 1;
    }
    out.out(`removed ${removed} binding${removed === 1 ? "" : "s"} of group ${groupId} to topic ${topic}`);
    return 0;
  },
};

/** `bind list`: every binding, as a table or as KiteQ's JSON. */
export const bindListCommand: Command = {
  name: "bind list",
  summary: "list the bindings (--json: KiteQ's binding JSON)",
  usage: ["bind list [--json] [--verbose]"],
  flags: ["json"],
  async run(ctx) {
    const { args, out } = ctx;
    const bindings = await readThrough(
      ctx,
      async (api) => (await api.get<Binding[]>("/api/bindings")) ?? [],
      (pool) =>
        listBindings(pool, undefined, (row) =>
          out.err(
            `kiteq-pg: binding ${row.groupId} / ${row.topic} / ${row.messageType} in the table is not valid and is ignored by brokers: ${row.reason}`,
          ),
        ),
    );
    if (args.has("json")) {
      out.out(bindingsToJson(bindings));
      return 0;
    }
    if (bindings.length === 0) {
      out.err("no bindings");
      return 0;
    }
    out.out(
      formatTable(
        ["GROUP", "TOPIC", "MESSAGE TYPE", "TYPE", "WATERMARK", "PERSISTENT"],
        bindings.map((b) => [
          b.groupId,
          b.topic,
          b.messageType,
          bindTypeName(b.bindType),
          b.watermark,
          b.persistent,
        ]),
      ),
    );
    return 0;
  },
};
