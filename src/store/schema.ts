/**
 * Drizzle schema of the working tables that drizzle-kit manages (`npm run db:generate`).
 * The history tables (messages, message_events) are range-partitioned, which drizzle-kit cannot
 * express: they are created by a custom migration (migrations/0001_history_partitioned.sql).
 */

import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  index,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";
import { EVENT_KINDS } from "./event-kinds.js";

/** History kinds as a PostgreSQL enum, generated from EVENT_KINDS. */
export const messageEventKind = pgEnum("message_event_kind", EVENT_KINDS);

const tz = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

/**
 * What is still owed: one row per (message, subscriber group). Claimed with FOR UPDATE SKIP
 * LOCKED; deleted when the group acks, the message expires or is dead-lettered.
 */
export const deliveries = pgTable(
  "deliveries",
  {
    messagePk: bigint("message_pk", { mode: "number" }).notNull(),
    groupId: text("group_id").notNull(),
    /** stored_at of the message (its partition key): lets the body fetch prune to one partition. */
    messageStoredAt: tz("message_stored_at").notNull(),
    topic: text("topic").notNull(),
    nextAttemptAt: tz("next_attempt_at").notNull(),
    expiresAt: tz("expires_at").notNull(),
    attempts: integer("attempts").notNull().default(0),
    deliverLimit: smallint("deliver_limit").notNull(),
    claimedBy: text("claimed_by"),
    leaseUntil: tz("lease_until"),
    claimEpoch: integer("claim_epoch").notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.messagePk, t.groupId] }),
    // The claim: a group's due rows, oldest first.
    index("deliveries_due_idx").on(t.groupId, t.nextAttemptAt),
    // The expiry sweep: oldest expiry first, whatever the backlog (issue 11).
    index("deliveries_expires_idx").on(t.expiresAt),
    // No index names claimed_by or lease_until: a claim, a lease renewal and a release then
    // change no indexed column and are HOT updates (no index entry written; migration 0009 leaves
    // two thirds of each page free for them). A dead claimer's rows are taken over through
    // dead_claimers, read by the claim itself, instead of being found and released by an index.
  ],
);

/**
 * Claimers declared dead (their liveness lock vanished, their node left the registry, or their
 * node started again): until `until` (one lease after the declaration, when every lease they held
 * has run out anyway) the claim treats their rows as free. The maintenance node and a starting
 * node write it; a few rows at most.
 */
export const deadClaimers = pgTable("dead_claimers", {
  claimer: text("claimer").primaryKey(),
  declaredAt: tz("declared_at").notNull(),
  until: tz("until").notNull(),
});

/**
 * Subscriptions, in KiteQ's binding model. Filled from the static YAML registry, the CLI, or
 * mirrored from ZooKeeper's /kiteq/sub; the delivery engine reads only this table.
 */
export const bindings = pgTable(
  "bindings",
  {
    groupId: text("group_id").notNull(),
    topic: text("topic").notNull(),
    messageType: text("message_type").notNull(),
    /** 0 Direct, 1 Regx, 2 Fanout (KiteQ's codes). */
    bindType: smallint("bind_type").notNull(),
    version: text("version").notNull().default(""),
    watermark: integer("watermark").notNull(),
    persistent: boolean("persistent").notNull(),
    /** Who wrote it: static (file), cli, zk. */
    source: text("source").notNull(),
    updatedAt: tz("updated_at").notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.groupId, t.topic, t.messageType] }),
    index("bindings_topic_idx").on(t.topic),
  ],
);

/** Broker nodes that ever ran against this database, with their last heartbeat. */
export const nodes = pgTable("nodes", {
  nodeId: text("node_id").primaryKey(),
  address: text("address").notNull(),
  startedAt: tz("started_at").notNull(),
  heartbeatAt: tz("heartbeat_at").notNull(),
  stoppedAt: tz("stopped_at"),
  /** The claimer id of the node's current run (its liveness lock is keyed by it). */
  claimer: text("claimer"),
  /** pg_postmaster_start_time() when the node took its liveness lock. */
  lockEpoch: tz("lock_epoch"),
  /** Its last two heartbeat snapshots (version, consumers and counters per group; see store/nodes.ts). */
  stats: jsonb("stats"),
});

/**
 * This database's place in the store (migration 0008): one row, written when the store was first
 * opened. `shard_id` is this database's own identity (a random uuid: it survives password changes
 * and failover host lists, which a URL would not), `shard_index` its place in the list, and
 * `shard_ids` the whole ordered list of shard uuids as recorded at creation (the same in every
 * shard; shard 0's is the reference). A node given another list refuses to start (shards.ts).
 */
export const shardIdentity = pgTable("shard_identity", {
  shardId: uuid("shard_id").primaryKey(),
  shardIndex: integer("shard_index").notNull(),
  shardIds: uuid("shard_ids").array().notNull(),
  createdAt: tz("created_at").notNull(),
});

/**
 * Two-phase commit bookkeeping: one row per message still uncommitted. Removed on commit or
 * rollback (the history keeps the story).
 */
export const pendingTransactions = pgTable(
  "pending_transactions",
  {
    messagePk: bigint("message_pk", { mode: "number" }).primaryKey(),
    messageStoredAt: tz("message_stored_at").notNull(),
    messageId: text("message_id").notNull(),
    topic: text("topic").notNull(),
    groupId: text("group_id").notNull(),
    nextCheckAt: tz("next_check_at").notNull(),
    checks: integer("checks").notNull().default(0),
    claimedBy: text("claimed_by"),
    leaseUntil: tz("lease_until"),
    storedAt: tz("stored_at").notNull(),
    /** Bumped by each claim of the TxChecker; its reschedule and release apply only with that epoch. */
    claimEpoch: integer("claim_epoch").notNull().default(0),
  },
  (t) => [
    index("pending_transactions_due_idx").on(t.groupId, t.nextCheckAt),
    /** A producer's TX_ACK names the message by its KiteQ id. */
    index("pending_transactions_message_id_idx").on(t.messageId),
    /** The give-up sweep: the oldest uncommitted messages first. */
    index("pending_transactions_stored_idx").on(t.storedAt),
    /** Releasing a gone claimer's check claims. */
    index("pending_transactions_claimed_by_idx")
      .on(sql`${t.claimedBy} COLLATE "C"`)
      .where(sql`${t.claimedBy} IS NOT NULL`),
  ],
);

/**
 * One row per stored message, by its KiteQ id: the one unique index on messageId (the messages
 * table is partitioned by day and cannot have one across days). Retention deletes a day's rows
 * before it drops that day's partition.
 */
export const messageIds = pgTable("message_ids", {
  messageId: text("message_id").primaryKey(),
  messagePk: bigint("message_pk", { mode: "number" }).notNull(),
  /** The message's partition key (messages.stored_at). */
  storedAt: tz("stored_at").notNull(),
});

/**
 * The dead letters of each group (migration 0013): one row per message and group whose delivery
 * ended at the deliver limit and was not given again. Written by the dead-lettering, removed by
 * a re-drive or replay (a fresh delivery), a late ack, and retention; the history keeps every
 * `dead_lettered` row. Listings and counts read it, so they cost what is dead now, not what ever was.
 */
export const deadLetters = pgTable(
  "dead_letters",
  {
    messagePk: bigint("message_pk", { mode: "number" }).notNull(),
    groupId: text("group_id").notNull(),
    messageStoredAt: tz("message_stored_at").notNull(),
    /** The time of its `dead_lettered` history row. */
    deadAt: tz("dead_at").notNull(),
    messageId: text("message_id").notNull(),
    topic: text("topic").notNull(),
    messageType: text("message_type").notNull(),
    attempt: integer("attempt"),
    /** The reason of the nack that dead-lettered it. */
    lastError: text("last_error"),
  },
  (t) => [
    primaryKey({ columns: [t.messagePk, t.groupId] }),
    index("dead_letters_group_idx").on(t.groupId, t.deadAt, t.messagePk),
  ],
);

/**
 * Deliveries owed per group, kept by statement-level triggers on deliveries (migration 0004):
 * the sum over a group's slots. Each backend adds to its own slot (pid % 16).
 */
export const owedCounts = pgTable(
  "owed_counts",
  {
    groupId: text("group_id").notNull(),
    slot: smallint("slot").notNull(),
    owed: bigint("owed", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.groupId, t.slot] })],
);

/**
 * Messages published with kiteq_publish (SQL, migration 0011) to a topic that has Regx bindings,
 * waiting for a broker to match them: a Regx pattern is Go's syntax, which only the broker's
 * matcher reads (PostgreSQL's regular expressions differ), so a node takes these rows (FOR UPDATE
 * SKIP LOCKED), writes the deliveries of the Regx-bound groups that match and deletes the rows.
 */
export const regxRouting = pgTable(
  "regx_routing",
  {
    messagePk: bigint("message_pk", { mode: "number" }).primaryKey(),
    messageStoredAt: tz("message_stored_at").notNull(),
    topic: text("topic").notNull(),
    messageType: text("message_type").notNull(),
    /** When the deliveries are due (kiteq.deliverAt, else the publish). */
    nextAttemptAt: tz("next_attempt_at").notNull(),
    expiresAt: tz("expires_at").notNull(),
    deliverLimit: smallint("deliver_limit").notNull(),
    /** Groups kiteq_publish already owed it (Direct, Fanout): a Regx binding of theirs adds nothing. */
    owedGroups: text("owed_groups").array(),
  },
  // Retention forgets the rows of the days it drops (no broker of this version ran meanwhile).
  (t) => [index("regx_routing_stored_idx").on(t.messageStoredAt)],
);
