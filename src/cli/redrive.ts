/**
 * `kiteq-pg redrive`: give a group a fresh delivery of a message that was dead-lettered (or
 * expired) for it, one by id, or every dead-lettered one of a time range.
 */
import { hostname } from "node:os";
import type pg from "pg";
import { isOwedTo, redriveDeliveries } from "../store/deliveries.js";
import { DEFAULT_HISTORY_LIMIT, messageHistory } from "../store/history.js";
import { messagesByShard, poolOfMessage, shardedDeadLetters } from "../store/sharded-history.js";
import { UsageError } from "./args.js";
import type { Command } from "./command.js";
import { interruptedExitCode, listenForInterruption } from "./interrupt.js";
import { withExistingStore } from "./store.js";

/** The longest --expires-in: a year. */
const MAX_EXPIRES_IN_SECONDS = 366 * 24 * 3600;

/** KiteQ's longest message life (expiredTime is capped at 7 days): the default of --expires-in. */
const DEFAULT_EXPIRES_IN_SECONDS = 7 * 24 * 3600;

/** `redrive`: by message id, or a group's dead letters of a time range. */
export const redriveCommand: Command = {
  name: "redrive",
  summary: "re-deliver dead-lettered (or expired) messages to a group",
  usage: [
    "redrive --message-id ID --group G [--expires-in SECONDS]",
    "redrive --group G --since T [--until T] [--limit N] [--expires-in SECONDS] [--dry-run]",
    "  the first takes a dead-lettered or expired message; the second every message of G dead-lettered in",
    "  [since, until) and still dead; the new delivery expires after --expires-in (default 7 days);",
    "  --dry-run lists what the second would redrive and changes nothing",
  ],
  flags: ["message-id", "group", "since", "until", "limit", "expires-in", "dry-run"],
  async run({ config, log, args, out }) {
    const now = new Date();
    const groupId = args.required("group");
    // At most a year: a huge value made an invalid time and a raw PostgreSQL error.
    const expiresIn = args.int("expires-in", DEFAULT_EXPIRES_IN_SECONDS, 1, MAX_EXPIRES_IN_SECONDS);
    // Each batch at its own time: one time for the whole run put every `redriven` row of a
    // range re-drive at one instant, and a page of `history --group` reads every row of the
    // instant it starts in (quadratic paging for a re-drive of tens of thousands).
    const redrive = (pool: pg.Pool, messageIds: readonly string[]) => {
      const at = new Date();
      return redriveDeliveries(pool, messageIds, {
        groupId,
        now: at,
        expiresAt: new Date(at.getTime() + expiresIn * 1000),
        nodeId: `cli@${hostname()}`,
        reason: "kiteq-pg redrive",
      });
    };

    if (args.has("message-id")) {
      if (args.has("since") || args.has("until") || args.has("limit")) {
        throw new UsageError("redrive: give either --message-id or --since, not both");
      }
      if (args.has("dry-run")) {
        throw new UsageError(
          "redrive: --dry-run lists a range's dead letters (--since); whether one message would be redriven: kiteq-pg explain <messageId>",
        );
      }
      const messageId = args.messageId();
      return withExistingStore(config, log, async (_pool, shards) => {
        // The message's own shard (one database: the only one).
        const pool = poolOfMessage(shards, messageId);
        if ((await redrive(pool, [messageId])).has(messageId)) {
          out.out(`redriven ${messageId} to group ${groupId}`);
          return 0;
        }
        out.err(`kiteq-pg: ${messageId} not redriven: ${await whyNot(pool, messageId, groupId)}`);
        return 1;
      });
    }
    if (!args.has("since")) throw new UsageError("redrive: give --message-id ID, or --since T");
    const since = args.time("since", now);
    const until = args.time("until", now, now);
    const limit = args.int("limit", DEFAULT_HISTORY_LIMIT, 1);
    if (since >= until) throw new UsageError("redrive: --since must be before --until");
    return withExistingStore(config, log, async (_pool, shards) => {
      // One more than asked: "run again for the rest" only when there is a rest.
      const found = await shardedDeadLetters(shards, groupId, since, until, limit + 1);
      const more = found.length > limit;
      const dead = more ? found.slice(0, limit) : found;
      const range = `[${since.toISOString()}, ${until.toISOString()})`;
      if (args.has("dry-run")) {
        // What the run would take: the dead letters it reads first (each still dead now).
        for (const d of dead) {
          out.out(
            `would redrive ${d.messageId} (${d.topic}/${d.messageType}, dead-lettered ${d.at.toISOString()})`,
          );
        }
        out.out(
          `${dead.length} dead-lettered message(s) of group ${groupId} in ${range} would be redriven (dry run: nothing changed)`,
        );
        if (more) out.err(`(first ${limit} only: a run takes at most --limit)`);
        return 0;
      }
      let done = 0;
      let tried = 0;
      const interruption = listenForInterruption();
      try {
        // A transaction per batch of a shard's messages (one per message was a few hundred a
        // second); a signal stops the run between batches.
        for (let i = 0; i < dead.length; i += REDRIVE_BATCH) {
          if (interruption.signal !== undefined) break;
          const batch = dead.slice(i, i + REDRIVE_BATCH);
          tried += batch.length;
          const ok = new Set<string>();
          for (const [pool, ids] of messagesByShard(
            shards,
            batch.map((d) => d.messageId),
          )) {
            for (const id of await redrive(pool, ids)) ok.add(id);
          }
          for (const d of batch) {
            if (ok.has(d.messageId)) {
              done++;
              out.out(
                `redriven ${d.messageId} (${d.topic}/${d.messageType}, dead-lettered ${d.at.toISOString()})`,
              );
            } else {
              const pool = poolOfMessage(shards, d.messageId);
              out.err(`kiteq-pg: ${d.messageId} not redriven: ${await whyNot(pool, d.messageId, groupId)}`);
            }
          }
        }
      } finally {
        interruption.dispose();
      }
      const signal = interruption.signal;
      if (signal !== undefined && tried < dead.length) {
        out.err(
          `kiteq-pg: ${signal}: stopped after ${done} of ${dead.length} dead-lettered message(s) of group ${groupId} in ${range} redriven (each one redriven is complete); run again for the rest`,
        );
        return interruptedExitCode(signal);
      }
      out.out(`${done} of ${dead.length} dead-lettered message(s) of group ${groupId} in ${range} redriven`);
      if (more) out.err(`(first ${limit} only: run again for the rest)`);
      return done === dead.length ? 0 : 1;
    });
  },
};

/** Messages re-driven per transaction. */
const REDRIVE_BATCH = 100;

/** Why a re-drive refused, from the message's history. */
async function whyNot(pool: pg.Pool, messageId: string, groupId: string): Promise<string> {
  const h = await messageHistory(pool, messageId);
  if (h === null) return "no such message in the history";
  const ends = h.events.filter(
    (e) =>
      e.groupId === groupId && (e.kind === "acked" || e.kind === "dead_lettered" || e.kind === "expired"),
  );
  const last = ends[ends.length - 1];
  if (last?.kind === "acked") return `group ${groupId} acked it`;
  if (last === undefined) {
    // An owed message read "never dead-lettered or expired", as if it were lost.
    return (await isOwedTo(pool, messageId, groupId))
      ? `it is owed to group ${groupId} now (never dead-lettered or expired): it is being delivered`
      : `it was never dead-lettered or expired for group ${groupId}`;
  }
  return `it is owed to group ${groupId} again (already redriven)`;
}
