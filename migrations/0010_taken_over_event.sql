-- A delivery a claim takes from another claimer (declared dead, or its lease ran out) gets a
-- `taken_over` history row: the earlier holder may have pushed it already (a push is written with
-- its outcome), so a possible second delivery is visible in the history.
ALTER TYPE "public"."message_event_kind" ADD VALUE 'taken_over';
