/**
 * `kiteq-pg history`: what happened to one message, or what one group received in a time range,
 * read from the history tables (src/store/history.ts holds the two queries).
 */

import { MAX_API_HISTORY_LIMIT } from "../admin/api.js";
import { DEFAULT_HISTORY_LIMIT, type GroupEvent, type MessageHistory } from "../store/history.js";
import { shardedGroupHistory, shardedMessageHistory } from "../store/sharded-history.js";
import { readThrough } from "./admin-client.js";
import { isMessageId, UsageError } from "./args.js";
import type { Command } from "./command.js";
import { formatJson, formatTable, notInHistory, type Output, oneLine } from "./output.js";

/** `history`: by message id, or by group and time range. */
export const historyCommand: Command = {
  name: "history",
  summary: "every event of a message, or what a group received between two times",
  usage: [
    "history <messageId> [--json] [--verbose]   (or --message-id ID)",
    "history --group G --since T [--until T] [--limit N] [--json] [--verbose]",
    "  T: ISO 8601 (2026-05-01T12:00:00Z), now, or a duration ago (90s, 15m, 2h, 7d); --until defaults to now;",
    "  the range is [since, until); read through the running broker's admin API (--admin, --admin-token)",
    "  when it answers, else the database; --verbose says which on stderr",
  ],
  flags: ["message-id", "group", "since", "until", "limit", "json"],
  // As explain: `history <messageId>` (it was refused as an unexpected argument).
  argument: "messageId",
  async run(ctx) {
    const { args, out, argument } = ctx;
    const json = args.has("json");
    if (argument !== undefined && args.has("message-id")) {
      throw new UsageError("history: give the message id once (argument or --message-id)");
    }
    if (argument !== undefined || args.has("message-id")) {
      if (args.has("group") || args.has("since") || args.has("until")) {
        throw new UsageError("history: give either a message id or --group with --since, not both");
      }
      const raw = (argument ?? args.required("message-id")).trim();
      if (!isMessageId(raw)) {
        throw new UsageError(`history: the message id must be 32 hexadecimal characters, got "${raw}"`);
      }
      const messageId = raw.toLowerCase();
      const history = await readThrough(
        ctx,
        (api) => api.get<MessageHistory>(`/messages/${messageId}`),
        (_pool, shards) => shardedMessageHistory(shards, messageId),
      );
      if (history === null) {
        out.err(notInHistory(messageId));
        return 1;
      }
      printMessageHistory(history, json, out);
      return 0;
    }
    if (!args.has("group"))
      throw new UsageError("history: give a message id (history <messageId>), or --group G --since T");
    const now = new Date();
    const groupId = args.required("group");
    const since = args.time("since", now);
    const until = args.time("until", now, now);
    const limit = args.int("limit", DEFAULT_HISTORY_LIMIT, 1);
    if (since >= until) throw new UsageError("history: --since must be before --until");
    const query = new URLSearchParams({
      since: since.toISOString(),
      until: until.toISOString(),
      limit: String(limit + 1),
    });
    // One row more than shown: whether the limit cut anything off.
    const fetched = await readThrough(
      ctx,
      limit + 1 > MAX_API_HISTORY_LIMIT
        ? null
        : async (api) =>
            (await api.get<GroupEvent[]>(`/api/groups/${encodeURIComponent(groupId)}/history?${query}`)) ??
            [],
      (_pool, shards) => shardedGroupHistory(shards, groupId, since, until, limit + 1),
    );
    const rows = fetched.slice(0, limit);
    if (json) {
      out.out(formatJson(rows));
    } else if (rows.length === 0) {
      out.err(`no events of group ${groupId} in [${since.toISOString()}, ${until.toISOString()})`);
    } else {
      out.out(
        formatTable(
          ["AT", "KIND", "MESSAGE", "TOPIC", "MESSAGE TYPE", "ATTEMPT", "NODE", "DETAIL"],
          rows.map((r) => [r.at, r.kind, r.messageId, r.topic, r.messageType, r.attempt, r.nodeId, r.detail]),
        ),
      );
    }
    if (fetched.length > limit) out.err(`(first ${limit} events only: narrow the range or raise --limit)`);
    return 0;
  },
};

function printMessageHistory(h: MessageHistory, json: boolean, out: Output): void {
  if (json) {
    out.out(formatJson(h));
    return;
  }
  out.out(
    `message ${oneLine(h.messageId)}: topic ${oneLine(h.topic)}, message type ${oneLine(h.messageType)}, from group ${oneLine(h.publisherGroupId)}` +
      `${h.commit ? "" : " (two-phase commit)"}, ${h.bodySize} bytes`,
  );
  out.out(
    `created ${h.createdAt.toISOString()}, stored ${h.storedAt.toISOString()}, expires ${h.expiresAt.toISOString()}, deliver limit ${h.deliverLimit}`,
  );
  out.out("");
  out.out(
    formatTable(
      ["AT", "KIND", "GROUP", "ATTEMPT", "NODE", "DETAIL"],
      h.events.map((e) => [e.at, e.kind, e.groupId, e.attempt, e.nodeId, e.detail]),
    ),
  );
}
