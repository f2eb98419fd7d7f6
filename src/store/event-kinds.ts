/**
 * Every kind of state change a message can go through. This list is the single source: the
 * TypeScript union, the PostgreSQL enum `message_event_kind` (a test asserts they agree) and
 * the README table come from it. Order carries no meaning.
 */
export const EVENT_KINDS = [
  /** Publish: a committed message stored (written with the messages row). */
  "received",
  /** Publish: a 2PC message stored with commit=false (written with the messages row). */
  "uncommitted",
  /** TX_ACK status 1 from the producer (or its answer to a check): deliveries created. */
  "committed",
  /** TX_ACK status 2, or the tx give-up age passed (detail says why): never delivered. */
  "rolled_back",
  /** TxChecker asked a producer about an uncommitted message; detail holds the answer. */
  "tx_checked",
  /** Dispatcher pushed the message to a consumer of group_id (attempt = attempt number). */
  "delivered",
  /** Consumer of group_id answered DELIVER_ACK true: the delivery is done (after a dead-lettering or expiry: detail says so). */
  "acked",
  /** Consumer answered false or did not answer in time (detail: why): redelivery scheduled, or at the deliver limit a dead_lettered row follows. */
  "nacked",
  /** expiredTime passed before group_id acked: the delivery is dropped. */
  "expired",
  /** deliverLimit reached for group_id: kept in the dead-letter state. */
  "dead_lettered",
  /** An operator re-drove a dead-lettered (or replayed) message to group_id: new delivery. */
  "redriven",
  /**
   * A claim took group_id's delivery from another claimer (detail: which, and whether it was
   * declared dead or its lease ran out). That claimer may have pushed it already (a push is
   * written with its outcome): a consumer may receive the message once more.
   */
  "taken_over",
] as const;

/**
 * An ack within this many seconds of its push is stored as one `acked` row whose delivered_at
 * holds the push time (migration 0007); the history queries show it as its `delivered` and
 * `acked` state changes. A slower ack keeps its own `delivered` row, so a time-range query needs
 * to look only this far past either end of its range.
 */
export const ACK_WITH_PUSH_WINDOW_SECONDS = 1;

/** One kind of history row. */
export type EventKind = (typeof EVENT_KINDS)[number];
