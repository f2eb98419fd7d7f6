/**
 * `kiteq-pg replay`: re-deliver a time range of a topic's history to a group (every committed
 * message stored in [since, until)), e.g. after a consumer bug lost what it had acked.
 */
import { hostname } from "node:os";
import { replayRange } from "../store/deliveries.js";
import { UsageError } from "./args.js";
import type { Command } from "./command.js";
import { withExistingStore } from "./store.js";

/** KiteQ's longest message life: the default of --expires-in. */
const DEFAULT_EXPIRES_IN_SECONDS = 7 * 24 * 3600;

/** `replay --topic T --group G --since T1 [--until T2]`. */
export const replayCommand: Command = {
  name: "replay",
  summary: "re-deliver a time range of a topic's history to a group",
  usage: [
    "replay --topic T --group G --since T [--until T] [--expires-in SECONDS]",
    "  every committed message of the topic stored in [since, until) gets a fresh delivery to G",
    "  (messages G still owes are left alone); each is a `redriven` row in the history",
  ],
  flags: ["topic", "group", "since", "until", "expires-in"],
  async run({ config, log, args, out }) {
    const now = new Date();
    const topic = args.required("topic");
    const groupId = args.required("group");
    if (!args.has("since")) throw new UsageError("replay: --since T is required");
    const since = args.time("since", now);
    const until = args.time("until", now, now);
    if (since >= until) throw new UsageError("replay: --since must be before --until");
    const expiresIn = args.int("expires-in", DEFAULT_EXPIRES_IN_SECONDS, 1);
    return withExistingStore(config, log, async (_pool, shards) => {
      let n = 0;
      // Every shard holds some of the topic's messages: each replays its own.
      for (const pool of shards) {
        n += await replayRange(pool, {
          topic,
          groupId,
          since,
          until,
          now,
          expiresAt: new Date(now.getTime() + expiresIn * 1000),
          nodeId: `cli@${hostname()}`,
          reason: `kiteq-pg replay [${since.toISOString()}, ${until.toISOString()})`,
        });
      }
      out.out(`${n} message(s) of topic ${topic} replayed to group ${groupId}`);
      return 0;
    });
  },
};
