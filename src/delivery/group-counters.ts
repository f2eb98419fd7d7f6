/**
 * Per-group delivery counters of one node: plain integers in a map (one lookup per event on the
 * dispatcher's path), read by the metrics and the admin API's rates. Groups are bounded by the
 * bindings, so the label set stays small.
 */

/** What one group's deliveries did on this node since it started. */
export interface GroupDeliveryCounters {
  /** Pushes to consumers (every attempt). */
  pushed: number;
  /** Pushes of a delivery already attempted before (attempt 2 or later). */
  redelivered: number;
  acked: number;
  /** Failed pushes scheduled for redelivery. */
  nacked: number;
  deadLettered: number;
}

/** The counters of every group seen on this node. */
export class GroupCounters {
  private readonly groups = new Map<string, GroupDeliveryCounters>();

  /** The counters of `groupId` (created at zero on first use). */
  of(groupId: string): GroupDeliveryCounters {
    let c = this.groups.get(groupId);
    if (c === undefined) {
      c = { pushed: 0, redelivered: 0, acked: 0, nacked: 0, deadLettered: 0 };
      this.groups.set(groupId, c);
    }
    return c;
  }

  /** Every group's counters (live objects: read, do not keep). */
  all(): ReadonlyMap<string, Readonly<GroupDeliveryCounters>> {
    return this.groups;
  }
}
