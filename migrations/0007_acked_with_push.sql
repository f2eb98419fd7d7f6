-- Issue 14: an ack that comes within a second of its push is one history row, not two: the
-- `acked` row carries the push time in delivered_at, and the history queries show it as the
-- `delivered` and `acked` state changes it stands for. One heap row and two index entries less
-- per acked delivery, the hot path's largest write. Slower acks keep their own `delivered` row.
ALTER TABLE "message_events" ADD COLUMN "delivered_at" timestamptz;
