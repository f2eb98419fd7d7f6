/**
 * `kiteq-pg explain <messageId>`: per group, the message's history and its state in words
 * (src/store/explain.ts derives it).
 */
import type { MessageExplanation } from "../store/explain.js";
import { shardedExplain } from "../store/sharded-history.js";
import { readThrough } from "./admin-client.js";
import { isMessageId, UsageError } from "./args.js";
import type { Command } from "./command.js";
import { formatJson, formatTable, notInHistory, type Output, oneLine } from "./output.js";

/** `explain`: why a message is (not) delivered, group by group. */
export const explainCommand: Command = {
  name: "explain",
  summary: "the state of a message for every group, in words, with its history",
  usage: [
    "explain <messageId> [--json] [--verbose]   (or --message-id ID)",
    "  read through the running broker's admin API (--admin, --admin-token) when it answers, else the database;",
    "  --verbose says which on stderr",
  ],
  flags: ["message-id", "json"],
  argument: "messageId",
  async run(ctx) {
    const { args, out, argument } = ctx;
    if (argument !== undefined && args.has("message-id")) {
      throw new UsageError("explain: give the message id once (argument or --message-id)");
    }
    const raw = argument ?? args.optional("message-id");
    if (raw === undefined) throw new UsageError("explain: give the message id (explain <messageId>)");
    if (!isMessageId(raw.trim())) {
      throw new UsageError(`explain: the message id must be 32 hexadecimal characters, got "${raw}"`);
    }
    const messageId = raw.trim().toLowerCase();
    const explanation = await readThrough(
      ctx,
      (api) => api.get<MessageExplanation>(`/api/messages/${messageId}/explain`),
      (_pool, shards) => shardedExplain(shards, messageId),
    );
    if (explanation === null) {
      out.err(notInHistory(messageId));
      return 1;
    }
    if (args.has("json")) out.out(formatJson(explanation));
    else printExplanation(explanation, out);
    return 0;
  },
};

/** The explanation as text: the message, then each group's state and timeline. */
export function printExplanation(e: MessageExplanation, out: Output): void {
  const m = e.message;
  out.out(
    `message ${oneLine(m.messageId)}: topic ${oneLine(m.topic)}, message type ${oneLine(m.messageType)}, from group ${oneLine(m.publisherGroupId)}` +
      `${m.commit ? "" : " (two-phase commit)"}, ${m.bodySize} bytes`,
  );
  out.out(
    `stored ${m.storedAt.toISOString()}, expires ${m.expiresAt.toISOString()}, deliver limit ${m.deliverLimit}` +
      (e.transaction === "none" ? "" : `, transaction: ${e.transaction.replace("_", " ")}`),
  );
  if (e.groups.length === 0) out.out("\nno group is bound to it or was ever owed it");
  for (const g of e.groups) {
    out.out("");
    out.out(`group ${oneLine(g.groupId)}: ${oneLine(g.description)}`);
    if (g.timeline.length > 0) {
      out.out(
        formatTable(
          ["  AT", "KIND", "ATTEMPT", "NODE", "DETAIL"],
          g.timeline.map((t) => [`  ${t.at.toISOString()}`, t.kind, t.attempt, t.nodeId, t.detail]),
        ),
      );
    }
  }
  if (e.messageEvents.length > 0) {
    out.out("");
    // A title line and a table indented as the groups' (the title was glued to the AT column).
    out.out("message events:");
    out.out(
      formatTable(
        ["  AT", "KIND", "ATTEMPT", "NODE", "DETAIL"],
        e.messageEvents.map((t) => [`  ${t.at.toISOString()}`, t.kind, t.attempt, t.nodeId, t.detail]),
      ),
    );
  }
}
