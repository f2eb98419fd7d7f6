/**
 * A delivery this node holds (claimed or pre-claimed) and is about to push, is pushing, or is
 * recording the outcome of.
 */
import type { Header } from "../protocol/messages.js";
import type { ClaimedDelivery } from "../store/deliveries.js";
import type { PublishRecord } from "../store/messages.js";

/** One (message, group) delivery held by this node. */
export interface DeliveryJob {
  /**
   * The shard holding the delivery (0 with one database): its ack, nack, lease renewal and
   * release go there. messagePk is unique only within a shard.
   */
  readonly shard: number;
  readonly messagePk: number;
  readonly groupId: string;
  /**
   * Epoch of our claim (fences nacks and releases). Moved on when this node claims the delivery
   * again while its push is in flight (see inFlight).
   */
  claimEpoch: number;
  /** Failed attempts so far (the push about to be made is attempt attempts + 1). */
  readonly attempts: number;
  readonly deliverLimit: number;
  readonly expiresAtMs: number;
  readonly header: Header;
  readonly body: Buffer;
  readonly isString: boolean;
  /** The encoded BYTES/STRING_MESSAGE body, shared by the jobs of one message (one encode per message, not per group). */
  readonly wire: WireCache;
  /** When the message was stored (fast-path jobs only; claimed ones do not carry it). */
  readonly storedAtMs?: number;
  /**
   * Until when our claim holds (epoch ms): set at the claim, moved on by each lease renewal that
   * found the row still ours. Past it another node may have taken the delivery over (this node
   * was paused, or cut off from the database): it is not pushed from here any more.
   */
  leaseUntilMs: number;
  /**
   * The consumer acked it and the ack awaits its write (a database away: retried until written).
   * A claim that takes the delivery again meanwhile (its lease ran out) must not push it: the ack
   * ends the delivery whatever the claim.
   */
  ackPending?: boolean;
  /**
   * Pushed and not answered yet (no ack, no timeout, its connection open). A claim that takes the
   * delivery again meanwhile (this node's lease ran out: renewals failed, or the node was paused,
   * and no other node took it) adopts this push instead of pushing again.
   */
  inFlight?: boolean;
}

/** The protobuf encoding of a message as pushed, filled on first push. */
export interface WireCache {
  bytes?: Buffer;
}

/**
 * The jobs this node holds, by group and message: a lookup per push and per ack at tens of
 * thousands per second, so no string key is built for each (that garbage was a visible share of
 * the broker's GC time).
 */
export class HeldJobs {
  private readonly byGroup = new Map<string, Map<number, DeliveryJob>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Hold `job` (replacing an earlier job of the same message and group). */
  add(job: DeliveryJob): void {
    let jobs = this.byGroup.get(job.groupId);
    if (jobs === undefined) {
      jobs = new Map();
      this.byGroup.set(job.groupId, jobs);
    }
    const before = jobs.size;
    jobs.set(job.messagePk, job);
    this.count += jobs.size - before;
  }

  /** Stop holding `job`, unless a newer job of the same message and group replaced it. */
  remove(job: DeliveryJob): void {
    const jobs = this.byGroup.get(job.groupId);
    if (jobs === undefined || jobs.get(job.messagePk) !== job) return;
    jobs.delete(job.messagePk);
    this.count--;
    if (jobs.size === 0) this.byGroup.delete(job.groupId);
  }

  /** The job held for this message and group, if any. */
  get(groupId: string, messagePk: number): DeliveryJob | undefined {
    return this.byGroup.get(groupId)?.get(messagePk);
  }

  /** How many jobs of `groupId` are held. */
  countOf(groupId: string): number {
    return this.byGroup.get(groupId)?.size ?? 0;
  }

  /** The groups with held jobs. */
  groups(): IterableIterator<string> {
    return this.byGroup.keys();
  }

  /** Every held job. */
  *values(): IterableIterator<DeliveryJob> {
    for (const jobs of this.byGroup.values()) yield* jobs.values();
  }
}

/**
 * The jobs for the deliveries of one stored message that this node pre-claimed at publish (local
 * fast path): first attempt, epoch 1; one header and one wire encoding shared by all of them.
 */
export function jobsFromPublish(
  record: PublishRecord,
  pk: number,
  groupIds: readonly string[],
  shard: number,
  leaseUntilMs: number,
): DeliveryJob[] {
  const header = publishedHeader(record);
  const wire: WireCache = {};
  // Called once the publish committed: close enough to its store time.
  const storedAtMs = Date.now();
  return groupIds.map((groupId) => ({
    shard,
    messagePk: pk,
    groupId,
    claimEpoch: 1,
    attempts: 0,
    deliverLimit: record.deliverLimit,
    expiresAtMs: record.expiresAt.getTime(),
    header,
    body: record.body,
    isString: record.bodyIsString,
    wire,
    storedAtMs,
    leaseUntilMs,
  }));
}

function publishedHeader(record: PublishRecord): Header {
  return {
    messageId: record.messageId,
    topic: record.topic,
    messageType: record.messageType,
    expiredTime: Math.floor(record.expiresAt.getTime() / 1000),
    deliverLimit: record.deliverLimit,
    groupId: record.groupId,
    commit: true,
    fly: false,
    properties: record.properties,
    createTime: Math.floor(record.createdAt.getTime() / 1000),
    snappy: record.snappy,
  };
}

/** A job for a delivery claimed from the table. */
export function jobFromClaim(c: ClaimedDelivery, shard: number, leaseUntilMs: number): DeliveryJob {
  return {
    leaseUntilMs,
    shard,
    messagePk: c.messagePk,
    groupId: c.groupId,
    claimEpoch: c.claimEpoch,
    attempts: c.attempts,
    deliverLimit: c.deliverLimit,
    expiresAtMs: c.expiresAt.getTime(),
    header: {
      messageId: c.messageId,
      topic: c.topic,
      messageType: c.messageType,
      expiredTime: Math.floor(c.expiresAt.getTime() / 1000),
      deliverLimit: c.deliverLimit,
      groupId: c.publisherGroupId,
      commit: true,
      fly: false,
      properties: c.properties ?? [],
      createTime: Math.floor(c.createdAt.getTime() / 1000),
      snappy: c.snappy,
    },
    body: c.body,
    isString: c.bodyIsString,
    wire: {},
  };
}
