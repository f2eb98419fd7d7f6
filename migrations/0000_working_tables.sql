CREATE TYPE "public"."message_event_kind" AS ENUM('received', 'uncommitted', 'committed', 'rolled_back', 'tx_checked', 'delivered', 'acked', 'nacked', 'expired', 'dead_lettered', 'redriven');--> statement-breakpoint
CREATE TABLE "bindings" (
	"group_id" text NOT NULL,
	"topic" text NOT NULL,
	"message_type" text NOT NULL,
	"bind_type" smallint NOT NULL,
	"version" text DEFAULT '' NOT NULL,
	"watermark" integer NOT NULL,
	"persistent" boolean NOT NULL,
	"source" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "bindings_group_id_topic_message_type_pk" PRIMARY KEY("group_id","topic","message_type")
);
--> statement-breakpoint
CREATE TABLE "deliveries" (
	"message_pk" bigint NOT NULL,
	"group_id" text NOT NULL,
	"message_created_at" timestamp with time zone NOT NULL,
	"topic" text NOT NULL,
	"next_attempt_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"deliver_limit" smallint NOT NULL,
	"claimed_by" text,
	"lease_until" timestamp with time zone,
	"claim_epoch" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "deliveries_message_pk_group_id_pk" PRIMARY KEY("message_pk","group_id")
);
--> statement-breakpoint
CREATE TABLE "nodes" (
	"node_id" text PRIMARY KEY NOT NULL,
	"address" text NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"heartbeat_at" timestamp with time zone NOT NULL,
	"stopped_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "pending_transactions" (
	"message_pk" bigint PRIMARY KEY NOT NULL,
	"message_created_at" timestamp with time zone NOT NULL,
	"message_id" text NOT NULL,
	"topic" text NOT NULL,
	"group_id" text NOT NULL,
	"next_check_at" timestamp with time zone NOT NULL,
	"checks" integer DEFAULT 0 NOT NULL,
	"claimed_by" text,
	"lease_until" timestamp with time zone,
	"stored_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "bindings_topic_idx" ON "bindings" USING btree ("topic");--> statement-breakpoint
CREATE INDEX "deliveries_due_idx" ON "deliveries" USING btree ("group_id","next_attempt_at");--> statement-breakpoint
CREATE INDEX "deliveries_expires_idx" ON "deliveries" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "deliveries_claimed_by_idx" ON "deliveries" USING btree ("claimed_by") WHERE "deliveries"."claimed_by" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "pending_transactions_due_idx" ON "pending_transactions" USING btree ("group_id","next_check_at");