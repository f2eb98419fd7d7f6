-- Two-phase commit (issue 5): the TxChecker's claims of pending_transactions are fenced by a claim
-- epoch (as deliveries are); a producer's TX_ACK finds its message by message_id; the give-up
-- sweep takes the oldest uncommitted messages by stored_at.
ALTER TABLE "pending_transactions" ADD COLUMN "claim_epoch" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX "pending_transactions_message_id_idx" ON "pending_transactions" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "pending_transactions_stored_idx" ON "pending_transactions" USING btree ("stored_at");
