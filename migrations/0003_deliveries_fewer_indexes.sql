DROP INDEX "deliveries_expires_idx";--> statement-breakpoint
DROP INDEX "deliveries_claimed_by_idx";
