-- Claims as HOT updates (issue 14): no index on deliveries names claimed_by or lease_until, so a
-- claim, a lease renewal or a release writes no index entry, and two thirds of each page are left free
-- for the new row versions: every row of a page can be claimed once on its page, also with long
-- group and topic names (fillfactor applies to pages written from now on). A dead claimer's
-- rows are no longer released through the claimed_by index: the claim itself treats the rows of
-- the claimers listed here as free, for one lease after they were declared dead.
CREATE TABLE "dead_claimers" (
	"claimer" text PRIMARY KEY NOT NULL,
	"declared_at" timestamp with time zone NOT NULL,
	"until" timestamp with time zone NOT NULL
);
--> statement-breakpoint
DROP INDEX "deliveries_claimed_by_idx";--> statement-breakpoint
ALTER TABLE "deliveries" SET (fillfactor = 35);
