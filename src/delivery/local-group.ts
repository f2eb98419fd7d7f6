/**
 * This node's view of one consumer group: its connections here, the deliveries queued for it,
 * pushes in flight, and its flow control (watermark: rate in messages per second, burst half of
 * it, and at most `watermark` pushes in flight).
 */
import { type Binding, DEFAULT_WATERMARK } from "../binding/binding.js";
import type { Session } from "../server/session.js";
import type { DeliveryJob } from "./job.js";
import { TokenBucket } from "./token-bucket.js";

/** Deliveries held locally per group beyond those in flight (prefetch), at most. */
const PREFETCH = 1000;

/**
 * Acks answered but not yet written that cost a group nothing of its room: a few ack batches'
 * worth (the writer takes up to 2,000 at a time; a burn-down at 30,000/s has about 1,000 on the
 * way). Beyond it, each one takes a delivery's place: when acks are written slower than consumers
 * answer, the node pushes no faster than they are written instead of holding every acked job
 * and its ack in memory (a broker at 2 x 2,000/s grew to 0.9 GB with 257,000 acks queued).
 */
export const UNWRITTEN_ACKS_FREE = 4000;

/** One consumer group on this node. */
export class LocalGroup {
  sessions: Session[] = [];
  inFlight = 0;
  /** Acks of this group's pushes answered here and not yet written (see UNWRITTEN_ACKS_FREE). */
  acksUnwritten = 0;
  /** The last claim filled its limit: more may be waiting in the table. */
  backlog = true;
  readonly bucket: TokenBucket;
  maxInFlight: number;
  private queue: DeliveryJob[] = [];
  private head = 0;
  private pumpTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    watermark: number,
  ) {
    this.maxInFlight = watermark;
    this.bucket = TokenBucket.forWatermark(watermark);
  }

  setWatermark(watermark: number): void {
    this.maxInFlight = watermark;
    this.bucket.reconfigure(watermark, Math.max(1, Math.floor(watermark / 2)));
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  /** How many more deliveries this group should take onto this node now. */
  room(): number {
    const ackBacklog = Math.max(0, this.acksUnwritten - UNWRITTEN_ACKS_FREE);
    return Math.min(this.maxInFlight, PREFETCH) * 2 - this.queued - this.inFlight - ackBacklog;
  }

  hasRoom(): boolean {
    return this.room() > 0;
  }

  /** After pushes completed: worth claiming again. */
  wantsMore(): boolean {
    return this.backlog && this.queued < Math.min(this.maxInFlight, PREFETCH);
  }

  enqueue(job: DeliveryJob): void {
    this.queue.push(job);
  }

  peek(): DeliveryJob | undefined {
    return this.queue[this.head];
  }

  shift(): DeliveryJob | undefined {
    const job = this.queue[this.head];
    if (job === undefined) return undefined;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return job;
  }

  /** Remove and return every queued job. */
  drainQueue(): DeliveryJob[] {
    const jobs = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    clearTimeout(this.pumpTimer);
    return jobs;
  }

  /** Run `pump` after `ms` (one timer at a time). */
  schedulePump(ms: number, pump: () => void): void {
    if (this.pumpTimer !== undefined) return;
    this.pumpTimer = setTimeout(
      () => {
        this.pumpTimer = undefined;
        pump();
      },
      Math.max(1, Math.ceil(ms)),
    );
  }
}

/**
 * A group's delivery rate: the highest watermark among its bindings (the default when it has
 * none), capped at `maxWatermark` (the broker's --max-watermark; 0 = no cap).
 */
export function effectiveWatermark(
  bindings: readonly Pick<Binding, "groupId" | "watermark">[],
  groupId: string,
  maxWatermark: number,
): number {
  let w = 0;
  for (const b of bindings) if (b.groupId === groupId) w = Math.max(w, b.watermark);
  if (w <= 0) w = DEFAULT_WATERMARK;
  return maxWatermark > 0 ? Math.min(w, maxWatermark) : w;
}
