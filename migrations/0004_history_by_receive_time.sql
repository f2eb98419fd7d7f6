-- Issue 11: the history is partitioned by the broker's own receive time, a messageId is stored
-- once whatever its createTime, background statements get the indexes they need, and the owed
-- count per group is kept by triggers instead of counted.
--
-- 1. message_ids: one row per stored message, keyed by its KiteQ id. The only unique index on a
--    messageId (a partitioned table cannot have one that spans its partitions); retention deletes
--    a day's rows before it drops that day's messages partition.
CREATE TABLE "message_ids" (
	"message_id" text PRIMARY KEY NOT NULL,
	"message_pk" bigint NOT NULL,
	"stored_at" timestamp with time zone NOT NULL
);--> statement-breakpoint
ALTER TABLE "message_ids" SET (fillfactor = 90);--> statement-breakpoint
-- 2. messages: rebuilt, partitioned by stored_at (the broker's clock), no default partition.
DO $$
DECLARE
	r record;
BEGIN
	ALTER TABLE "messages" RENAME TO "messages_legacy";
	FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	          WHERE i.inhparent = 'messages_legacy'::regclass LOOP
		EXECUTE format('ALTER TABLE %I RENAME TO %I', r.relname, replace(r.relname, 'messages_', 'messages_legacy_'));
	END LOOP;
	ALTER INDEX "messages_message_id_idx" RENAME TO "messages_legacy_message_id_idx";
	ALTER INDEX "messages_id_idx" RENAME TO "messages_legacy_id_idx";
END $$;--> statement-breakpoint
CREATE TABLE "messages" (
	"id" bigint NOT NULL DEFAULT nextval('messages_id_seq'),
	"message_id" text NOT NULL,
	"topic" text NOT NULL,
	"message_type" text NOT NULL,
	"group_id" text NOT NULL,
	"commit" boolean NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"deliver_limit" smallint NOT NULL,
	-- the producer's header.createTime: data only (it may be any date a producer's clock says).
	"created_at" timestamp with time zone NOT NULL,
	-- the broker's receive time: the partition key, so retention drops exactly the days it names.
	"stored_at" timestamp with time zone NOT NULL,
	"properties" jsonb,
	"snappy" boolean NOT NULL DEFAULT false,
	"body_is_string" boolean NOT NULL,
	"body" bytea NOT NULL
) PARTITION BY RANGE ("stored_at");--> statement-breakpoint
ALTER SEQUENCE "messages_id_seq" OWNED BY "messages"."id";--> statement-breakpoint
-- Found by id (deliveries, events); by messageId through message_ids, so no second index here.
CREATE INDEX "messages_id_idx" ON "messages" ("id");--> statement-breakpoint
-- Creates the daily partitions of both history tables for [p_from, p_to). No default partition:
-- every row lands in the day the broker received it.
CREATE OR REPLACE FUNCTION "kiteq_ensure_partitions"(p_from date, p_to date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	d date := p_from;
	t text;
	created integer := 0;
BEGIN
	-- Nodes starting together must not race to create the same partition.
	PERFORM pg_advisory_xact_lock(1801807205);
	WHILE d < p_to LOOP
		FOREACH t IN ARRAY ARRAY['messages', 'message_events'] LOOP
			IF to_regclass(format('%I', t || '_p' || to_char(d, 'YYYYMMDD'))) IS NULL THEN
				EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
					t || '_p' || to_char(d, 'YYYYMMDD'), t, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
				created := created + 1;
			END IF;
		END LOOP;
		d := d + 1;
	END LOOP;
	RETURN created;
END $$;--> statement-breakpoint
-- The days the existing rows were received on (a tiny table for a fresh install).
SELECT "kiteq_ensure_partitions"(
	coalesce((SELECT min(stored_at) FROM messages_legacy), now())::date,
	coalesce((SELECT max(stored_at) FROM messages_legacy), now())::date + 1);--> statement-breakpoint
INSERT INTO "messages" (id, message_id, topic, message_type, group_id, "commit", expires_at, deliver_limit,
                        created_at, stored_at, properties, snappy, body_is_string, body)
SELECT id, message_id, topic, message_type, group_id, "commit", expires_at, deliver_limit,
       created_at, stored_at, properties, snappy, body_is_string, body
  FROM "messages_legacy";--> statement-breakpoint
-- A messageId stored twice under different createTimes before this migration: the first is its row.
INSERT INTO "message_ids" (message_id, message_pk, stored_at)
SELECT message_id, id, stored_at FROM "messages" ORDER BY id
ON CONFLICT DO NOTHING;--> statement-breakpoint
DROP TABLE "messages_legacy";--> statement-breakpoint
-- 3. message_events: its key (at) was always the broker's clock; rows that sat in the default
--    partition move to their days, and the default partition goes.
ALTER TABLE "message_events" DETACH PARTITION "message_events_default";--> statement-breakpoint
SELECT "kiteq_ensure_partitions"(d, d + 1)
  FROM (SELECT DISTINCT at::date AS d FROM "message_events_default") days;--> statement-breakpoint
INSERT INTO "message_events" SELECT * FROM "message_events_default";--> statement-breakpoint
DROP TABLE "message_events_default";--> statement-breakpoint
-- 4. deliveries and pending_transactions find their message by (id, stored_at).
ALTER TABLE "deliveries" RENAME COLUMN "message_created_at" TO "message_stored_at";--> statement-breakpoint
UPDATE "deliveries" d SET message_stored_at = m.stored_at FROM "messages" m WHERE m.id = d.message_pk;--> statement-breakpoint
ALTER TABLE "pending_transactions" RENAME COLUMN "message_created_at" TO "message_stored_at";--> statement-breakpoint
UPDATE "pending_transactions" p SET message_stored_at = m.stored_at FROM "messages" m WHERE m.id = p.message_pk;--> statement-breakpoint
-- 5. Index paths for the background statements: the expiry sweep (oldest expiry first), the
--    release of a gone claimer's rows (by claimer id, compared in C order so a prefix is a range).
CREATE INDEX "deliveries_expires_idx" ON "deliveries" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "deliveries_claimed_by_idx" ON "deliveries" USING btree ("claimed_by" COLLATE "C") WHERE "claimed_by" IS NOT NULL;--> statement-breakpoint
-- The dead letters of a group (operators, re-drive): only dead_lettered rows, a tiny index.
CREATE INDEX "message_events_dead_idx" ON "message_events" ("group_id", "at") WHERE "kind" = 'dead_lettered';--> statement-breakpoint
CREATE INDEX "pending_transactions_claimed_by_idx" ON "pending_transactions" USING btree ("claimed_by" COLLATE "C") WHERE "claimed_by" IS NOT NULL;--> statement-breakpoint
-- 6. What each group is owed, kept by statement-level triggers on deliveries: counting a million
--    rows for a gauge costs a million rows. One row per (group, slot); a writer adds to the slot of
--    its backend, so concurrent writers rarely wait on the same row.
CREATE TABLE "owed_counts" (
	"group_id" text NOT NULL,
	"slot" smallint NOT NULL,
	"owed" bigint NOT NULL,
	CONSTRAINT "owed_counts_group_id_slot_pk" PRIMARY KEY("group_id","slot")
);--> statement-breakpoint
CREATE FUNCTION "kiteq_owed_added"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO owed_counts (group_id, slot, owed)
	SELECT group_id, pg_backend_pid() % 16, count(*) FROM added GROUP BY group_id ORDER BY group_id
	ON CONFLICT (group_id, slot) DO UPDATE SET owed = owed_counts.owed + excluded.owed;
	RETURN NULL;
END $$;--> statement-breakpoint
CREATE FUNCTION "kiteq_owed_removed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO owed_counts (group_id, slot, owed)
	SELECT group_id, pg_backend_pid() % 16, -count(*) FROM removed GROUP BY group_id ORDER BY group_id
	ON CONFLICT (group_id, slot) DO UPDATE SET owed = owed_counts.owed + excluded.owed;
	RETURN NULL;
END $$;--> statement-breakpoint
CREATE TRIGGER "deliveries_owed_added" AFTER INSERT ON "deliveries"
	REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION "kiteq_owed_added"();--> statement-breakpoint
CREATE TRIGGER "deliveries_owed_removed" AFTER DELETE ON "deliveries"
	REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION "kiteq_owed_removed"();--> statement-breakpoint
CREATE FUNCTION "kiteq_owed_truncated"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM owed_counts;
	RETURN NULL;
END $$;--> statement-breakpoint
CREATE TRIGGER "deliveries_owed_truncated" AFTER TRUNCATE ON "deliveries"
	FOR EACH STATEMENT EXECUTE FUNCTION "kiteq_owed_truncated"();--> statement-breakpoint
INSERT INTO "owed_counts" (group_id, slot, owed) SELECT group_id, 0, count(*) FROM "deliveries" GROUP BY group_id;
--> statement-breakpoint
-- 7. Liveness (issue 13): each running node holds a session-level advisory lock keyed by its
--    claimer id, and records here which claimer it runs as and under which PostgreSQL server start
--    (pg_postmaster_start_time) it took the lock. A claimer whose lock is gone under the same
--    server start died: its claims are released at once. After a server restart every lock is
--    gone until each node takes its lock again, and nobody is declared dead for that.
ALTER TABLE "nodes" ADD COLUMN "claimer" text;--> statement-breakpoint
ALTER TABLE "nodes" ADD COLUMN "lock_epoch" timestamp with time zone;
