-- The history: messages (written once) and message_events (one row per state change), both
-- range-partitioned by day so retention drops whole partitions and never deletes rows.
-- drizzle-kit cannot express PARTITION BY, hence this custom migration.
CREATE SEQUENCE "messages_id_seq" AS bigint CACHE 100;--> statement-breakpoint
CREATE TABLE "messages" (
	"id" bigint NOT NULL DEFAULT nextval('messages_id_seq'),
	"message_id" text NOT NULL,
	"topic" text NOT NULL,
	"message_type" text NOT NULL,
	"group_id" text NOT NULL,
	"commit" boolean NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"deliver_limit" smallint NOT NULL,
	-- the producer's header.createTime: the partition key, and part of the idempotency key, since
	-- a producer that re-sends after a lost ack sends the same header.
	"created_at" timestamp with time zone NOT NULL,
	"stored_at" timestamp with time zone NOT NULL,
	"properties" jsonb,
	"snappy" boolean NOT NULL DEFAULT false,
	"body_is_string" boolean NOT NULL,
	"body" bytea NOT NULL
) PARTITION BY RANGE ("created_at");--> statement-breakpoint
ALTER SEQUENCE "messages_id_seq" OWNED BY "messages"."id";--> statement-breakpoint
CREATE UNIQUE INDEX "messages_message_id_idx" ON "messages" ("message_id", "created_at");--> statement-breakpoint
CREATE INDEX "messages_id_idx" ON "messages" ("id");--> statement-breakpoint
CREATE TABLE "messages_default" PARTITION OF "messages" DEFAULT;--> statement-breakpoint
CREATE TABLE "message_events" (
	"message_pk" bigint NOT NULL,
	"kind" "message_event_kind" NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"group_id" text,
	"node_id" text,
	"attempt" integer,
	"detail" text
) PARTITION BY RANGE ("at");--> statement-breakpoint
CREATE INDEX "message_events_message_idx" ON "message_events" ("message_pk", "at");--> statement-breakpoint
CREATE INDEX "message_events_group_idx" ON "message_events" ("group_id", "at") WHERE "group_id" IS NOT NULL;--> statement-breakpoint
CREATE TABLE "message_events_default" PARTITION OF "message_events" DEFAULT;--> statement-breakpoint
-- Creates the daily partitions of both history tables for [p_from, p_to). A day whose rows already
-- sit in the default partition (a producer clock far off) is left there.
CREATE FUNCTION "kiteq_ensure_partitions"(p_from date, p_to date) RETURNS integer
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
				BEGIN
					EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
						t || '_p' || to_char(d, 'YYYYMMDD'), t, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
					created := created + 1;
				EXCEPTION WHEN check_violation THEN
					RAISE NOTICE 'partition % of % left in default: rows already there', d, t;
				END;
			END IF;
		END LOOP;
		d := d + 1;
	END LOOP;
	RETURN created;
END $$;--> statement-breakpoint
-- deliveries churns (insert, update, delete per message): vacuum it early and often.
ALTER TABLE "deliveries" SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.05, fillfactor = 80);
