/**
 * `kiteq-pg replay`: re-deliver a time range of a topic's history to a group (every committed
 * message stored in [since, until)), e.g. after a consumer bug lost what it had acked.
 */
import { hostname } from "node:os";
import { BindType } from "../binding/binding.js";
import { BindingMatcher } from "../binding/matcher.js";
import { listBindings } from "../store/bindings.js";
import { replayRange } from "../store/deliveries.js";
import { UsageError } from "./args.js";
import type { Command } from "./command.js";
import { interruptedExitCode, listenForInterruption } from "./interrupt.js";
import { withExistingStore } from "./store.js";

/** The longest --expires-in: a year. */
const MAX_EXPIRES_IN_SECONDS = 366 * 24 * 3600;

/** KiteQ's longest message life: the default of --expires-in. */
const DEFAULT_EXPIRES_IN_SECONDS = 7 * 24 * 3600;

/** `replay --topic T --group G --since T1 [--until T2]`. */
export const replayCommand: Command = {
  name: "replay",
  summary: "re-deliver a time range of a topic's history to a group",
  usage: [
    "replay --topic T --group G --since T [--until T] [--expires-in SECONDS] [--dry-run]",
    "  every committed message of the topic stored in [since, until) that G's bindings match gets a",
    "  fresh delivery to G (G must be bound to the topic)",
    "  (messages G still owes are left alone); each is a `redriven` row in the history;",
    "  --dry-run counts what it would replay and writes nothing",
  ],
  flags: ["topic", "group", "since", "until", "expires-in", "dry-run"],
  async run({ config, log, args, out }) {
    const now = new Date();
    const topic = args.required("topic");
    const groupId = args.required("group");
    if (!args.has("since")) throw new UsageError("replay: --since T is required");
    const since = args.time("since", now);
    const until = args.time("until", now, now);
    if (since >= until) throw new UsageError("replay: --since must be before --until");
    // At most a year: a huge value made an invalid time and a raw PostgreSQL error.
    const expiresIn = args.int("expires-in", DEFAULT_EXPIRES_IN_SECONDS, 1, MAX_EXPIRES_IN_SECONDS);
    return withExistingStore(config, log, async (pool0, shards) => {
      // Only what the group's bindings to the topic match: a replay to an unbound group was
      // counted "replayed" and never delivered (claims serve bound groups), and a group bound to
      // one message type got every type of the topic.
      const bound = (await listBindings(pool0)).filter((b) => b.groupId === groupId && b.topic === topic);
      if (bound.length === 0) {
        out.err(
          `kiteq-pg: group ${groupId} is not bound to topic ${topic}: a replay would never be delivered; bind it first (kiteq-pg bind add --group ${groupId} --topic ${topic} ...)`,
        );
        return 1;
      }
      // The broker's own matcher decides which types the bindings match: a Regx binding is Go's
      // regexp syntax (PostgreSQL's differs: `\b` is a backspace there, `\pL` an error).
      const matcher = new BindingMatcher(bound, { cacheSize: 0 });
      const matchesType = bound.some((b) => b.bindType === BindType.Fanout)
        ? undefined
        : (messageType: string) => matcher.groupsFor(topic, messageType).length > 0;
      const dryRun = args.has("dry-run");
      let n = 0;
      // Ctrl-C: stop after the batch in flight (each batch is one transaction) and say how far.
      const interruption = listenForInterruption();
      let stopped = false;
      const shouldStop = () => {
        stopped ||= interruption.signal !== undefined;
        return stopped;
      };
      try {
        // Every shard holds some of the topic's messages: each replays its own.
        for (const [i, pool] of shards.entries()) {
          if (i > 0 && shouldStop()) break;
          n += await replayRange(pool, {
            topic,
            groupId,
            since,
            until,
            now,
            expiresAt: new Date(now.getTime() + expiresIn * 1000),
            nodeId: `cli@${hostname()}`,
            reason: `kiteq-pg replay [${since.toISOString()}, ${until.toISOString()})`,
            ...(matchesType === undefined ? {} : { matchesType }),
            shouldStop,
            dryRun,
          });
        }
      } finally {
        interruption.dispose();
      }
      if (stopped && interruption.signal !== undefined && dryRun) {
        out.err(
          `kiteq-pg: ${interruption.signal}: stopped after counting ${n} message(s) of topic ${topic} a replay to group ${groupId} would take (dry run: nothing written)`,
        );
        return interruptedExitCode(interruption.signal);
      }
      if (stopped && interruption.signal !== undefined) {
        out.err(
          `kiteq-pg: ${interruption.signal}: stopped after ${n} message(s) of topic ${topic} replayed to group ${groupId} (whole batches; a run again skips what the group still owes, but replays again what it acked since)`,
        );
        return interruptedExitCode(interruption.signal);
      }
      out.out(
        dryRun
          ? `${n} message(s) of topic ${topic} would be replayed to group ${groupId} (dry run: nothing written)`
          : `${n} message(s) of topic ${topic} replayed to group ${groupId}`,
      );
      return 0;
    });
  },
};
