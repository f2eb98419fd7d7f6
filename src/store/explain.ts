/**
 * "Why is this message (not) delivered?": for one messageId, per group, the history rows plus
 * the current state in words. Two index-only statements: the message's history
 * (MESSAGE_HISTORY_SQL, by message_ids then message_events_message_idx) and its working rows
 * (EXPLAIN_WORKING_SQL: deliveries by primary key, pending_transactions by primary key, the
 * topic's bindings by bindings_topic_idx). The state is derived in TypeScript, with `now` a
 * parameter so tests need not sleep.
 */
import type pg from "pg";
import { type Binding, bindingMatches } from "../binding/binding.js";
import { type BindingRow, bindingsFromRows } from "./bindings.js";
import { type HistoryEvent, type MessageHistory, messageHistory } from "./history.js";
import { TX_ANSWER_UNKNOWN } from "./transactions.js";

type Queryable = pg.Pool | pg.PoolClient;

/**
 * What is kept beside the history about one message: its deliveries (with the node holding
 * each, from nodes.claimer), its pending 2PC row, and the bindings of its topic.
 */
export const EXPLAIN_WORKING_SQL = `
WITH m AS (
  SELECT i.message_pk AS id, m.topic
    FROM message_ids i
    CROSS JOIN LATERAL (SELECT topic FROM messages WHERE id = i.message_pk AND stored_at = i.stored_at LIMIT 1) m
   WHERE i.message_id = $1
)
SELECT
  (SELECT coalesce(json_agg(json_build_object(
            'group_id', d.group_id, 'next_attempt_at', d.next_attempt_at, 'expires_at', d.expires_at,
            'attempts', d.attempts, 'deliver_limit', d.deliver_limit, 'claimed_by', d.claimed_by,
            'lease_until', d.lease_until, 'node_id', n.node_id, 'address', n.address,
            -- Its claimer declared dead (as the claim sees it): free to take, whatever its lease says.
            'claimer_dead', d.claimed_by IS NOT NULL AND EXISTS (
              SELECT 1 FROM dead_claimers x
               WHERE x.claimer = d.claimed_by AND x.until > now() AND d.lease_until <= x.until))
            ORDER BY d.group_id), '[]'::json)
     FROM m JOIN deliveries d ON d.message_pk = m.id
     LEFT JOIN LATERAL (SELECT node_id, address FROM nodes WHERE claimer = d.claimed_by LIMIT 1) n ON true
  ) AS deliveries,
  (SELECT json_build_object('next_check_at', p.next_check_at, 'checks', p.checks,
            'claimed_by', p.claimed_by, 'lease_until', p.lease_until)
     FROM m JOIN pending_transactions p ON p.message_pk = m.id
  ) AS pending,
  (SELECT coalesce(json_agg(json_build_object(
            'group_id', b.group_id, 'topic', b.topic, 'message_type', b.message_type, 'bind_type', b.bind_type,
            'version', b.version, 'watermark', b.watermark, 'persistent', b.persistent)), '[]'::json)
     FROM bindings b WHERE b.topic = (SELECT topic FROM m)
  ) AS bindings,
  -- Published in SQL and waiting for a broker's Regx match (store/regx-routing.ts).
  EXISTS (SELECT 1 FROM m JOIN regx_routing r ON r.message_pk = m.id) AS routing`;

/** The bindings of a topic, as EXPLAIN_WORKING_SQL gives them (shard 0 of a sharded store). */
export const TOPIC_BINDINGS_SQL = `
SELECT coalesce(json_agg(json_build_object(
         'group_id', b.group_id, 'topic', b.topic, 'message_type', b.message_type, 'bind_type', b.bind_type,
         'version', b.version, 'watermark', b.watermark, 'persistent', b.persistent)), '[]'::json) AS bindings
  FROM bindings b WHERE b.topic = $1`;

/** Options of explainMessage. */
export interface ExplainOptions {
  /** Where the bindings are, when not in `db` (shard 0 of a sharded store). */
  bindingsDb?: Queryable;
}

/** The state of a message for one group, as the console and the CLI name it. */
export const DELIVERY_STATES = [
  /** The group acked it: done. */
  "acked",
  /** Owed and not held by any node: the next attempt is due at nextAttemptAt. */
  "owed",
  /** Owed, stored with a delay: no attempt yet, the first is due in the future. */
  "delayed",
  /** Pushed (or about to be) by a node that holds it under a lease. */
  "held",
  /** A 2PC message not committed yet: nothing is owed until the producer commits. */
  "waiting_commit",
  /** The producer rolled it back (or the broker gave up asking): never delivered. */
  "rolled_back",
  /** Its expiredTime passed before the group acked. */
  "expired",
  /** The deliver limit was reached: kept as a dead letter (it can be re-driven). */
  "dead_lettered",
  /** Bound now, but nothing was ever owed (bound after the message was stored, or not persistent). */
  "not_owed",
] as const;

/** One of DELIVERY_STATES. */
export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** One group's part of an explanation. */
export interface GroupExplanation {
  groupId: string;
  state: DeliveryState;
  /** The state in words, with its times (ISO 8601, UTC). */
  description: string;
  /** Attempts made so far (pushes), from the delivery row or the history. */
  attempts: number;
  deliverLimit: number;
  /** When the next attempt is due (owed, delayed, held). */
  nextAttemptAt: Date | null;
  /** The node holding the delivery and its lease (held). */
  heldBy: { claimer: string; nodeId: string | null; address: string | null; leaseUntil: Date } | null;
  /** The reason given by the last nack, if any. */
  lastNackReason: string | null;
  /** The group's history rows, oldest first. */
  timeline: HistoryEvent[];
}

/** A 2PC message still waiting for its commit. */
export interface PendingExplanation {
  checks: number;
  nextCheckAt: Date;
  lastCheckAt: Date | null;
  /** The producer's answer to the last check ("unknown"); null while it has not answered. */
  lastAnswer: string | null;
  claimedBy: string | null;
}

/** Everything explainMessage says about one message. */
export interface MessageExplanation {
  message: Omit<MessageHistory, "events">;
  /** Whole-message state: committed (or a plain publish), waiting for its commit, rolled back. */
  transaction: "none" | "committed" | "waiting_commit" | "rolled_back";
  pending: PendingExplanation | null;
  /** History rows about the message as a whole (received, uncommitted, tx_checked, committed...). */
  messageEvents: HistoryEvent[];
  /** One entry per group: owed or ever owed, plus the groups bound to it now. */
  groups: GroupExplanation[];
  /** When the state was computed. */
  now: Date;
}

interface DeliveryJson {
  group_id: string;
  next_attempt_at: string;
  expires_at: string;
  attempts: number;
  deliver_limit: number;
  claimed_by: string | null;
  lease_until: string | null;
  node_id: string | null;
  address: string | null;
  claimer_dead: boolean;
}

type BindingJson = BindingRow;

interface WorkingRows {
  deliveries: DeliveryJson[];
  pending: {
    next_check_at: string;
    checks: number;
    claimed_by: string | null;
    lease_until: string | null;
  } | null;
  bindings: BindingJson[];
  routing: boolean;
}

/**
 * Explain `messageId` at `now`: null when no such message is stored. `messageId` is matched
 * lower-cased (KiteQ ids are stored so).
 */
export async function explainMessage(
  db: Queryable,
  messageId: string,
  now: Date = new Date(),
  options: ExplainOptions = {},
): Promise<MessageExplanation | null> {
  const id = messageId.toLowerCase();
  // Independent statements: on a pool they run side by side.
  const [history, { rows }] = await Promise.all([
    messageHistory(db, id),
    db.query<WorkingRows>({ text: EXPLAIN_WORKING_SQL, values: [id] }),
  ]);
  if (history === null) return null;
  const working = rows[0] ?? { deliveries: [], pending: null, bindings: [], routing: false };
  if (options.bindingsDb !== undefined && options.bindingsDb !== db) {
    // A sharded store: the message is in its shard, the bindings in shard 0.
    const b = await options.bindingsDb.query<{ bindings: WorkingRows["bindings"] }>({
      text: TOPIC_BINDINGS_SQL,
      values: [history.topic],
    });
    working.bindings = b.rows[0]?.bindings ?? [];
  }
  return explainFrom(history, working, now);
}

const iso = (d: Date) => d.toISOString();

function explainFrom(history: MessageHistory, working: WorkingRows, now: Date): MessageExplanation {
  const { events, ...message } = history;
  const messageEvents = events.filter((e) => e.groupId === null);
  const kinds = new Set(messageEvents.map((e) => e.kind));
  const transaction: MessageExplanation["transaction"] = kinds.has("rolled_back")
    ? "rolled_back"
    : kinds.has("committed")
      ? "committed"
      : !history.commit
        ? "waiting_commit"
        : "none";
  // tx_checked rows are of two sorts: a check sent (detail "check N sent to ...") and a
  // producer's "unknown" answer to it. The last check is the last row sent; its answer, if any,
  // the "unknown" row after it (a commit or rollback ends the wait and is shown instead).
  const checks = messageEvents.filter((e) => e.kind === "tx_checked");
  const asks = checks.filter((e) => e.detail !== TX_ANSWER_UNKNOWN);
  const lastAsk = asks[asks.length - 1];
  const lastUnknown = checks.filter((e) => e.detail === TX_ANSWER_UNKNOWN).pop();
  const lastCheckAt = lastAsk?.at ?? lastUnknown?.at ?? null;
  const answered = lastUnknown !== undefined && (lastAsk === undefined || lastUnknown.at >= lastAsk.at);
  const pending: PendingExplanation | null =
    working.pending === null
      ? null
      : {
          checks: working.pending.checks,
          nextCheckAt: new Date(working.pending.next_check_at),
          lastCheckAt,
          lastAnswer: answered ? TX_ANSWER_UNKNOWN : null,
          claimedBy: working.pending.claimed_by,
        };

  const byGroup = new Map<string, HistoryEvent[]>();
  for (const e of events) {
    if (e.groupId === null) continue;
    const list = byGroup.get(e.groupId) ?? [];
    list.push(e);
    byGroup.set(e.groupId, list);
  }
  const deliveries = new Map(working.deliveries.map((d) => [d.group_id, d]));
  // A row that is not a valid binding (hand-edited: bindings are checked where they enter)
  // matches nothing, as in the broker; it must not make the whole explanation fail.
  const bound = bindingsFromRows(working.bindings)
    .filter((b: Binding) => bindingMatches(b, history.topic, history.messageType))
    .map((b) => b.groupId);
  const groupIds = [...new Set([...byGroup.keys(), ...deliveries.keys(), ...bound])].sort();

  const groups = groupIds.map((groupId) =>
    explainGroup(
      groupId,
      byGroup.get(groupId) ?? [],
      deliveries.get(groupId),
      transaction,
      pending,
      history,
      now,
      working.routing,
    ),
  );
  return { message, transaction, pending, messageEvents, groups, now };
}

function explainGroup(
  groupId: string,
  timeline: HistoryEvent[],
  d: DeliveryJson | undefined,
  transaction: MessageExplanation["transaction"],
  pending: PendingExplanation | null,
  history: MessageHistory,
  now: Date,
  routing: boolean,
): GroupExplanation {
  const nacks = timeline.filter((e) => e.kind === "nacked");
  const lastNackReason = nacks[nacks.length - 1]?.detail ?? null;
  const pushes = timeline.filter((e) => e.kind === "delivered").length;
  // A delivery taken from a node that died may have been pushed by it: say so where it ended.
  const takeovers = timeline.filter((e) => e.kind === "taken_over").length;
  const takeoverWords =
    takeovers === 0
      ? ""
      : `; taken over ${takeovers === 1 ? "once" : `${takeovers} times`} from a node that went without answering: the consumer may have received it more than once`;
  const base = {
    groupId,
    deliverLimit: d?.deliver_limit ?? history.deliverLimit,
    lastNackReason,
    timeline,
    attempts: d?.attempts ?? pushes,
    nextAttemptAt: null,
    heldBy: null,
  };
  const nackWords = lastNackReason === null ? "" : `; last nack: ${lastNackReason}`;
  if (d !== undefined) {
    const next = new Date(d.next_attempt_at);
    const lease = d.lease_until === null ? null : new Date(d.lease_until);
    const attempt = `attempt ${d.attempts + 1} of ${d.deliver_limit}`;
    const who = d.node_id === null ? d.claimed_by : `${d.node_id}${d.address ? ` (${d.address})` : ""}`;
    if (d.claimed_by !== null && d.claimer_dead) {
      // Before: "held by node X under a lease until ..." for a node killed seconds ago.
      return {
        ...base,
        state: "owed",
        nextAttemptAt: next,
        description: `owed: held by node ${who}, which was declared dead (its process is gone); the next claim of the group takes it over (${attempt}${nackWords})`,
      };
    }
    if (d.claimed_by !== null && lease !== null && lease > now) {
      return {
        ...base,
        state: "held",
        nextAttemptAt: next,
        heldBy: { claimer: d.claimed_by, nodeId: d.node_id, address: d.address, leaseUntil: lease },
        description: `held by node ${who} under a lease until ${iso(lease)} (${attempt}${nackWords})`,
      };
    }
    if (d.attempts === 0 && next > now && !timeline.some((e) => e.kind === "redriven")) {
      return { ...base, state: "delayed", nextAttemptAt: next, description: `delayed until ${iso(next)}` };
    }
    const expiry = new Date(d.expires_at) <= now ? `; expired at ${d.expires_at}, about to be dropped` : "";
    if (d.claimed_by !== null && lease !== null) {
      // Before: "owed, next attempt at <an hour ago>", nothing saying a node had held it.
      return {
        ...base,
        state: "owed",
        nextAttemptAt: next,
        description: `owed: its claim by node ${who} lapsed at ${iso(lease)} (that node stopped renewing it: stopped, paused or cut off from the database); the next claim of the group takes it over (${attempt}${nackWords}${expiry})`,
      };
    }
    return {
      ...base,
      state: "owed",
      nextAttemptAt: next,
      // Due in the past: said so, and why it can wait (it read "next attempt at <73 min ago>").
      description:
        next > now
          ? `owed, next attempt at ${iso(next)} (${attempt}${nackWords}${expiry})`
          : `owed, due since ${iso(next)}: waiting for a node to claim it (no consumer of the group connected, or its consumers busy with older messages) (${attempt}${nackWords}${expiry})`,
    };
  }
  if (transaction === "waiting_commit") {
    const check =
      pending?.lastCheckAt != null
        ? `last check-back at ${iso(pending.lastCheckAt)}, answer: ${pending.lastAnswer ?? "none yet"}`
        : "no check-back yet";
    // A check due in the past waits for a producer of the publishing group to be connected: it
    // read "next check at <an hour ago>".
    const next =
      pending === null
        ? ""
        : pending.nextCheckAt > now
          ? `; next check at ${iso(pending.nextCheckAt)}`
          : `; a check-back due since ${iso(pending.nextCheckAt)}, sent once a producer of group ${history.publisherGroupId} is connected to a node`;
    return { ...base, state: "waiting_commit", description: `waiting for its 2PC commit (${check}${next})` };
  }
  if (transaction === "rolled_back") {
    const rb = history.events.find((e) => e.kind === "rolled_back");
    return {
      ...base,
      state: "rolled_back",
      description: `rolled back at ${rb === undefined ? "?" : iso(rb.at)}${rb?.detail ? ` (${rb.detail})` : ""}: never delivered`,
    };
  }
  const end = [...timeline]
    .reverse()
    .find((e) => e.kind === "acked" || e.kind === "expired" || e.kind === "dead_lettered");
  if (end?.kind === "acked") {
    return {
      ...base,
      state: "acked",
      description: `delivered and acked at ${iso(end.at)} (attempt ${end.attempt ?? pushes}${takeoverWords})`,
    };
  }
  if (end?.kind === "expired") {
    return {
      ...base,
      state: "expired",
      description: `expired at ${iso(end.at)}${end.detail ? ` (${end.detail})` : ""}`,
    };
  }
  if (end?.kind === "dead_lettered") {
    const attempts = end.attempt ?? pushes;
    return {
      ...base,
      state: "dead_lettered",
      description: `dead-lettered at ${iso(end.at)} after ${attempts} ${attempts === 1 ? "attempt" : "attempts"}${nackWords}`,
    };
  }
  if (routing) {
    return {
      ...base,
      state: "not_owed",
      description:
        "published in SQL: waiting for a broker to match its Regx binding (at once when a broker of this version runs)",
    };
  }
  return {
    ...base,
    state: "not_owed",
    description: "bound now, but never owed (bound after the message was stored, or not persistent)",
  };
}
