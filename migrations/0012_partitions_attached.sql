-- Partition upkeep without stalling publishes (an operator walkthrough at production size): a new
-- day was created with CREATE TABLE ... PARTITION OF, which takes an ACCESS EXCLUSIVE lock on the
-- parent; while it waited for one reader of the history (an operator's open psql transaction, a
-- long admin read), every publish and ack queued behind it, up to the upkeep lock timeout (2 s),
-- and then the creation failed. Now a day is created as a table of its own and attached: ATTACH
-- PARTITION takes a SHARE UPDATE EXCLUSIVE lock on the parent, which inserts and reads go on
-- beside (retention detaches days CONCURRENTLY for the same reason, src/store/db.ts).
CREATE OR REPLACE FUNCTION "kiteq_ensure_partitions"(p_from date, p_to date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	d date := p_from;
	t text;
	p text;
	created integer := 0;
BEGIN
	-- Nodes starting together must not race to create the same partition.
	PERFORM pg_advisory_xact_lock(1801807205);
	WHILE d < p_to LOOP
		FOREACH t IN ARRAY ARRAY['messages', 'message_events'] LOOP
			p := t || '_p' || to_char(d, 'YYYYMMDD');
			IF to_regclass(format('%I', p)) IS NULL THEN
				-- The parent's columns, defaults and constraints; ATTACH adds its indexes (an empty table).
				EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)', p, t);
				EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
					t, p, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
				created := created + 1;
			END IF;
		END LOOP;
		d := d + 1;
	END LOOP;
	RETURN created;
END $$;
