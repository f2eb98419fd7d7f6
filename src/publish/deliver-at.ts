/**
 * Delayed delivery (kiteq-pg's, not KiteQ's): a message property any KiteQ client can set.
 * Its value is unix milliseconds in decimal; the broker stores the message at once and pushes it
 * to no group before that time (deliveries.next_attempt_at), and the `received` history row says
 * when it is due ("due at <ISO time>").
 */

/** The property key: `kiteq.deliverAt`, value unix milliseconds (decimal digits). */
export const DELIVER_AT_PROPERTY = "kiteq.deliverAt";

/** Text of the `received` row's detail for a delayed message. */
export function dueDetail(deliverAt: Date): string {
  return `due at ${deliverAt.toISOString()}`;
}
