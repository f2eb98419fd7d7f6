-- Shards: the store may be several PostgreSQL databases (a message lives in shard
-- fnv1a32(messageId) % count). Each database records, once, its own shard uuid, its index and the
-- ordered list of every shard's uuid, as given when the store was created; a node started with
-- another list refuses to start (src/store/shards.ts). One row at most per database.
CREATE TABLE "shard_identity" (
	"shard_id" uuid PRIMARY KEY NOT NULL,
	"shard_index" integer NOT NULL,
	"shard_ids" uuid[] NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "shard_identity_one_row" ON "shard_identity" ((true));
