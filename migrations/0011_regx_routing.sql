-- kiteq_publish (migration 0005) matched Regx bindings with PostgreSQL's regular expressions,
-- which read Go's syntax differently: `\b` (a word boundary in Go) is a backspace there, and
-- `(?P<name>...)`, `\pL` or `\Q...\E` do not compile (the group was silently not owed). Now it
-- writes the deliveries of Direct and Fanout bindings, and a message of a topic with Regx
-- bindings waits in regx_routing until a broker matches it with its own (Go) matcher, writes the
-- deliveries of the Regx-bound groups that match (and were not owed it already through a
-- Direct or Fanout binding: one delivery per group) and deletes the row (a `kiteq_route`
-- notification wakes the brokers at the commit). owed_groups counts the deliveries written here
-- (Direct and Fanout).
CREATE TABLE "regx_routing" (
	"message_pk" bigint PRIMARY KEY NOT NULL,
	"message_stored_at" timestamp with time zone NOT NULL,
	"topic" text NOT NULL,
	"message_type" text NOT NULL,
	"next_attempt_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"deliver_limit" smallint NOT NULL,
	"owed_groups" text[]
);
--> statement-breakpoint
CREATE INDEX "regx_routing_stored_idx" ON "regx_routing" USING btree ("message_stored_at");--> statement-breakpoint
CREATE OR REPLACE FUNCTION "kiteq_publish"(
	p_topic text,
	p_message_type text,
	p_body bytea,
	p_group_id text DEFAULT 'sql',
	p_properties jsonb DEFAULT NULL,
	p_message_id text DEFAULT NULL,
	p_expires_at timestamptz DEFAULT NULL,
	p_deliver_limit integer DEFAULT 100,
	p_deliver_at timestamptz DEFAULT NULL,
	p_body_is_string boolean DEFAULT true,
	p_snappy boolean DEFAULT false
) RETURNS TABLE (message_id text, duplicate boolean, owed_groups integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
	v_now timestamptz := now();
	v_id text := lower(coalesce(p_message_id, replace(gen_random_uuid()::text, '-', '')));
	v_pk bigint;
	v_expires timestamptz;
	v_limit smallint;
	v_due timestamptz;
	v_props jsonb;
	v_owed integer;
	v_owed_groups text[];
	v_routed boolean := false;
	v_day text := to_char(v_now AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
	IF v_id !~ '^[0-9a-f]{32}$' THEN
		RAISE EXCEPTION 'kiteq_publish: invalid messageId "%": 32 hexadecimal characters expected', p_message_id
			USING ERRCODE = '22023';
	END IF;
	IF coalesce(p_topic, '') = '' OR coalesce(p_message_type, '') = '' OR coalesce(p_group_id, '') = '' THEN
		RAISE EXCEPTION 'kiteq_publish: topic, messageType and groupId must not be empty' USING ERRCODE = '22023';
	END IF;
	IF p_body IS NULL THEN
		RAISE EXCEPTION 'kiteq_publish: body must not be null' USING ERRCODE = '22023';
	END IF;
	-- KiteQ's rules: at most 7 days, a time already past is refused; deliverLimit 1..100.
	IF p_expires_at IS NOT NULL AND p_expires_at < v_now THEN
		RAISE EXCEPTION 'kiteq_publish: expired message (expiresAt % < now)', p_expires_at USING ERRCODE = '22023';
	END IF;
	v_expires := least(coalesce(p_expires_at, v_now + interval '7 days'), v_now + interval '7 days');
	v_limit := CASE WHEN p_deliver_limit IS NULL OR p_deliver_limit <= 0 OR p_deliver_limit > 100 THEN 100
	                ELSE p_deliver_limit END;
	IF p_deliver_at IS NOT NULL AND p_deliver_at > v_expires THEN
		RAISE EXCEPTION 'kiteq_publish: invalid deliverAt %: after the message''s expiry %', p_deliver_at, v_expires
			USING ERRCODE = '22023';
	END IF;
	v_due := greatest(v_now, coalesce(p_deliver_at, v_now));
	-- Properties as the broker stores them: [{"key":..,"value":..}], from an object or that array.
	v_props := CASE
		WHEN p_properties IS NULL THEN NULL
		WHEN jsonb_typeof(p_properties) = 'object' THEN
			(SELECT jsonb_agg(jsonb_build_object('key', k, 'value', v)) FROM jsonb_each_text(p_properties) AS e(k, v))
		ELSE p_properties END;
	IF p_deliver_at IS NOT NULL THEN
		v_props := coalesce(v_props, '[]'::jsonb)
			|| jsonb_build_array(jsonb_build_object('key', 'kiteq.deliverAt',
			                                        'value', (floor(extract(epoch FROM p_deliver_at) * 1000))::bigint::text));
	END IF;

	-- Today's partitions normally exist (the brokers keep days ahead); create them if not. Only
	-- then is the partition lock taken, so concurrent callers do not queue on it.
	IF to_regclass(format('%I', 'messages_p' || v_day)) IS NULL
	   OR to_regclass(format('%I', 'message_events_p' || v_day)) IS NULL THEN
		PERFORM kiteq_ensure_partitions((v_now AT TIME ZONE 'UTC')::date, (v_now AT TIME ZONE 'UTC')::date + 1);
	END IF;

	INSERT INTO message_ids AS i (message_id, message_pk, stored_at)
	VALUES (v_id, nextval('messages_id_seq'), v_now)
	ON CONFLICT DO NOTHING
	RETURNING i.message_pk INTO v_pk;
	IF v_pk IS NULL THEN
		-- Already stored (idempotent by messageId, as a broker publish).
		RETURN QUERY SELECT v_id, true, 0;
		RETURN;
	END IF;

	INSERT INTO messages (id, message_id, topic, message_type, group_id, "commit", expires_at, deliver_limit,
	                      created_at, stored_at, properties, snappy, body_is_string, body)
	VALUES (v_pk, v_id, p_topic, p_message_type, p_group_id, true, v_expires, v_limit,
	        v_now, v_now, v_props, p_snappy, p_body_is_string, p_body);

	INSERT INTO message_events (message_pk, kind, at, node_id, detail)
	VALUES (v_pk, 'received', v_now, 'sql',
	        CASE WHEN p_deliver_at IS NOT NULL AND p_deliver_at > v_now
	             THEN 'published in transaction; due at '
	                  || to_char(p_deliver_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
	             ELSE 'published in transaction' END);

	WITH owed AS (
		INSERT INTO deliveries (message_pk, group_id, message_stored_at, topic, next_attempt_at, expires_at,
		                        deliver_limit, claimed_by, lease_until, claim_epoch)
		SELECT DISTINCT ON (b.group_id) v_pk, b.group_id, v_now, p_topic, v_due, v_expires, v_limit, NULL, NULL, 0
		  FROM bindings b
		 WHERE b.topic = p_topic
		   AND (b.bind_type = 2 OR (b.bind_type = 0 AND b.message_type = p_message_type))
		 ORDER BY b.group_id
		RETURNING group_id
	)
	SELECT count(*), array_agg(group_id) INTO v_owed, v_owed_groups FROM owed;

	-- Regx bindings are Go's syntax: a broker matches them (regx_routing), after this commit, for
	-- the groups not owed it already (one delivery per group, as the broker's own publish).
	IF EXISTS (SELECT 1 FROM bindings b
	            WHERE b.topic = p_topic AND b.bind_type = 1
	              AND NOT (b.group_id = ANY (coalesce(v_owed_groups, '{}'::text[])))) THEN
		INSERT INTO regx_routing (message_pk, message_stored_at, topic, message_type, next_attempt_at,
		                          expires_at, deliver_limit, owed_groups)
		VALUES (v_pk, v_now, p_topic, p_message_type, v_due, v_expires, v_limit, v_owed_groups);
		v_routed := true;
	END IF;

	IF v_owed > 0 THEN
		PERFORM pg_notify('kiteq_due', '');
	END IF;
	IF v_routed THEN
		PERFORM pg_notify('kiteq_route', '');
	END IF;
	RETURN QUERY SELECT v_id, false, v_owed;
END $$;--> statement-breakpoint
DROP FUNCTION IF EXISTS "kiteq_regx_matches"(text, text);
