/**
 * `kiteq-pg history`: what happened to one message, or what one group received in a time range,
 * read from the history tables (src/store/history.ts holds the two queries).
 */

import { MAX_API_HISTORY_LIMIT } from "../admin/api.js";
import { EVENT_KINDS } from "../store/event-kinds.js";
import {
  DEFAULT_HISTORY_LIMIT,
  type GroupEvent,
  type GroupHistoryPlace,
  type MessageHistory,
} from "../store/history.js";
import { shardedGroupHistoryRows, shardedMessageHistory } from "../store/sharded-history.js";
import { readThrough } from "./admin-client.js";
import { isMessageId, UsageError } from "./args.js";
import type { Command } from "./command.js";
import {
  formatJson,
  formatTable,
  jsonArrayWriter,
  notInHistory,
  type Output,
  oneLine,
  tableWriter,
} from "./output.js";

/** Width of an ISO 8601 time as printed (2026-12-04T19:17:17.534Z), and of a messageId. */
const ISO_TIME_WIDTH = 24;
const MESSAGE_ID_WIDTH = 32;

/** Rows per database read of a group's history (the CLI's own reads). */
const DB_HISTORY_PAGE = 5_000;

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
      // A message's history is shown whole: --limit was taken and ignored.
      if (args.has("limit")) throw new UsageError("history: --limit applies to history --group only");
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
    // Page by page, each written as it comes: a whole read was held before printing (375 MB for
    // 200,000 events), and one API answer of 10,000 rows held the broker's event loop.
    // AT and KIND as wide as any of their values: a first page of deliveries and acks set KIND
    // 9 wide, and every later dead_lettered or taken_over row was shifted out of line.
    const table = tableWriter(
      ["AT", "KIND", "MESSAGE", "TOPIC", "MESSAGE TYPE", "ATTEMPT", "NODE", "DETAIL"],
      out,
      [ISO_TIME_WIDTH, Math.max(...EVENT_KINDS.map((k) => k.length)), MESSAGE_ID_WIDTH],
    );
    const array = jsonArrayWriter(out);
    let shown = 0;
    let more = false;
    /** Write a page; false once the limit is reached (one row past it says more exist). */
    const take = (rows: readonly GroupEvent[]): boolean => {
      const room = limit - shown;
      if (rows.length > room) more = true;
      const kept = rows.slice(0, room);
      if (json) array.items(kept);
      else
        table.rows(
          kept.map((r) => [r.at, r.kind, r.messageId, r.topic, r.messageType, r.attempt, r.nodeId, r.detail]),
        );
      shown += kept.length;
      return !more && shown < limit;
    };
    // Each page asks for what is still wanted, plus the one row that says whether more exist.
    const pageSize = (max: number) => Math.min(max, limit - shown + 1);
    await readThrough(
      ctx,
      async (api) => {
        const first = new URLSearchParams({
          since: since.toISOString(),
          until: until.toISOString(),
          limit: String(pageSize(MAX_API_HISTORY_LIMIT)),
        });
        let path: string | null = `/api/groups/${encodeURIComponent(groupId)}/history?${first}`;
        while (path !== null) {
          const page: { body: GroupEvent[]; next: string | null } | null =
            await api.getPage<GroupEvent[]>(path);
          if (page === null || !take(page.body) || page.next === null) break;
          const next: URL = new URL(page.next, api.base);
          next.searchParams.set("limit", String(pageSize(MAX_API_HISTORY_LIMIT)));
          path = `${next.pathname}${next.search}`;
        }
      },
      async (_pool, shards) => {
        let after: GroupHistoryPlace | undefined;
        for (;;) {
          const size = pageSize(DB_HISTORY_PAGE);
          const rows = await shardedGroupHistoryRows(shards, groupId, since, until, size, after);
          if (!take(rows.map((r) => r.event)) || rows.length < size) break;
          after = rows[rows.length - 1]!.place;
        }
      },
    );
    if (json) array.end();
    else if (shown === 0)
      out.err(`no events of group ${groupId} in [${since.toISOString()}, ${until.toISOString()})`);
    if (more) out.err(`(first ${limit} events only: narrow the range or raise --limit)`);
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
