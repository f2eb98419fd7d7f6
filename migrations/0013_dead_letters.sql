-- The dead letters of each group as a working table (an operator walkthrough at production size):
-- pages, filters and counts walked every dead_lettered row the group ever had, with probes of the
-- message, its last nack, its deliveries and its later acks per row: a filter matching nothing read
-- 54 buffers per dead letter ever (1.3-3 s at 15,000-35,000), and 60,000 dead letters since
-- re-driven made an empty page 0.7-1.1 s and the sampler's count 714 ms. Now one row per message
-- and group still dead, written by the dead-lettering (NACK at the deliver limit) and removed by
-- what ends it: a re-drive or replay giving the group a fresh delivery, a late ack, retention.
-- The history keeps every dead_lettered row as before.
CREATE TABLE "dead_letters" (
	"message_pk" bigint NOT NULL,
	"group_id" text NOT NULL,
	"message_stored_at" timestamp with time zone NOT NULL,
	"dead_at" timestamp with time zone NOT NULL,
	"message_id" text NOT NULL,
	"topic" text NOT NULL,
	"message_type" text NOT NULL,
	"attempt" integer,
	"last_error" text,
	CONSTRAINT "dead_letters_message_pk_group_id_pk" PRIMARY KEY("message_pk","group_id")
);--> statement-breakpoint
-- A group's dead letters in the order pages list them.
CREATE INDEX "dead_letters_group_idx" ON "dead_letters" ("group_id", "dead_at", "message_pk");--> statement-breakpoint
-- What the history says is dead now: a group's latest dead_lettered row of a message, not owed to
-- the group again, not acked, dead-lettered or expired for it after that (a re-drive that expired
-- ended expired: the listings before this migration showed it, the table does not); with the
-- reason of its last nack.
INSERT INTO "dead_letters" (message_pk, group_id, message_stored_at, dead_at, message_id, topic, message_type,
                            attempt, last_error)
SELECT e.message_pk, e.group_id, m.stored_at, e.at, m.message_id, m.topic, m.message_type, e.attempt, n.detail
  FROM message_events e
  JOIN messages m ON m.id = e.message_pk
  LEFT JOIN LATERAL (
    SELECT x.detail FROM message_events x
     WHERE x.message_pk = e.message_pk AND x.group_id = e.group_id AND x.kind = 'nacked'
     ORDER BY x.at DESC LIMIT 1
  ) n ON true
 WHERE e.kind = 'dead_lettered'
   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_pk = e.message_pk AND d.group_id = e.group_id)
   AND NOT EXISTS (SELECT 1 FROM message_events a
                    WHERE a.message_pk = e.message_pk AND a.group_id = e.group_id
                      AND a.kind IN ('acked', 'dead_lettered', 'expired') AND a.at > e.at)
ON CONFLICT DO NOTHING;
