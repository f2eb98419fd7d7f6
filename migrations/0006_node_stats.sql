-- Issue 16: each node writes, with its heartbeat, a small JSON snapshot of its per-group connected
-- consumers and delivery counters plus its version ({"current": {...}, "previous": {...}}: the
-- last two snapshots, so any node's admin API computes cluster-wide rates from their deltas).
ALTER TABLE "nodes" ADD COLUMN "stats" jsonb;
