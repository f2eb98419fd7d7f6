/**
 * The Dispatcher: gets due deliveries onto this node (pre-claimed at publish, or claimed from the
 * deliveries table with FOR UPDATE SKIP LOCKED when NOTIFY or the poll says so), pushes each to
 * one connection of its group under the group's flow control, and turns DELIVER_ACKs and
 * timeouts into acks and nacks (redelivery schedule, dead letter at the deliver limit).
 */

import type pg from "pg";
import { type Binding, KITEQ_MAX_WATERMARK } from "../binding/binding.js";
import { BindingMatcher } from "../binding/matcher.js";
import { DeadlineExceeded, withDeadline } from "../deadline.js";
import { ErrorCode, toKiteqError } from "../errors.js";
import { LatencyHistogram } from "../latency.js";
import type { Logger } from "../log.js";
import { RateLimitedLog } from "../log-limit.js";
import { CommandType } from "../protocol/commands.js";
import {
  type DeliverAck,
  encodeBytesMessage,
  encodeStringMessage,
  type Header,
} from "../protocol/messages.js";
import type { NormalisedHeader } from "../publish/validate.js";
import type { Session } from "../server/session.js";
import {
  type ClaimedDelivery,
  type ClaimTally,
  claimDueDeliveries,
  deliveryKey,
  nextDueAfter,
  renewHeldLeases,
} from "../store/deliveries.js";
import { declareNodeDead } from "../store/liveness.js";
import type { PublishRecord, PublishResult } from "../store/messages.js";
import type { WakeSource } from "../store/notifications.js";
import { AnswerPace, MIN_UNANSWERED } from "./answer-pace.js";
import { storableFeedback } from "./feedback.js";
import { GroupCounters } from "./group-counters.js";
import { type DeliveryJob, HeldJobs, jobFromClaim, jobsFromPublish, type WireCache } from "./job.js";
import { effectiveWatermark, LocalGroup, UNWRITTEN_ACKS_FREE } from "./local-group.js";
import { MAX_RETRY_DELAY_MS, OutcomeWriter } from "./outcomes.js";
import { type RedeliveryStep, redeliveryDelayMs } from "./schedule.js";
import { pickConnection, warmupWeight } from "./warmup.js";

/** Settings of a Dispatcher. */
export interface DispatcherOptions {
  pool: pg.Pool;
  /**
   * The shards' pools, shard 0 first (absent: `pool` is the only shard). Claims rotate over them;
   * a job's outcome, lease renewal and release go to its own shard.
   */
  pools?: readonly pg.Pool[];
  /** Node id (history rows, logs). */
  nodeId: string;
  /** Claimer id of this incarnation: `${nodeId}/${startTime}`. */
  claimer: string;
  log: Logger;
  /** No DELIVER_ACK within this long counts as false (KiteQ deliverySeconds). */
  deliveryTimeoutMs: number;
  leaseMs: number;
  /** Backstop poll period (KiteQ recoverSeconds). */
  pollMs: number;
  redelivery: readonly RedeliveryStep[];
  /**
   * Static registry: a non-persistent binding is owed only while a consumer of the group is
   * connected here. (With ZooKeeper the binding itself disappears with the consumer.)
   */
  nonPersistentNeedsLocalConsumer: boolean;
  /** Cap on a group's watermark (KiteQ's 6,000 by default); 0 = none. */
  maxWatermark?: number;
}

interface InFlight {
  job: DeliveryJob;
  group: LocalGroup;
  pushedAt: number;
  /** When the push times out (pushedAt + the delivery timeout). */
  deadline: number;
}

const CLAIM_BATCH = 1000;

/**
 * A held delivery is pushed only while its lease has at least this long to run (at most a quarter
 * of the lease: a renewal is due every third of it): the lease in the database may have been set a
 * little earlier than the node noted it.
 */
const LEASE_MARGIN_MS = 1000;
/**
 * With several shards, how long a claim (or next-due probe) may take before the claim loop goes on
 * to the other shards and takes the shard for down for a second (its late answer is still used).
 */
const SHARD_ANSWER_MS = 2000;

/** At most one probe for the next due delivery (delayed messages, retries) per this many ms. */
const NEXT_DUE_PROBE_MS = 100;
/** A late ack is honoured for this many delivery timeouts after the push timed out. */
const LATE_ACK_WINDOW_FACTOR = 6;

/** A push that timed out, kept for its late ack (see onDeliverAck). */
interface TimedOutPush {
  shard: number;
  messagePk: number;
  groupId: string;
  messageId: string;
  /** The attempt the push was. */
  attempt: number;
  forgetAt: number;
}

/**
 * A push-timeout sweep this much later than its interval means the node did not run meanwhile
 * (SIGSTOP, a frozen VM, starved of CPU, a long GC pause).
 */
const STALL_MS = 1_000;

/** Lost warm-up draws in one turn of a group's pump before it waits 10 ms (an uncapped group). */
const MAX_LOST_DRAWS_PER_PUMP = 64;

function timedOutKey(session: Session, opaque: number): string {
  return `${session.id}:${opaque}`;
}

/** Counters exposed as metrics. */
export interface DeliveryCounters {
  pushed: number;
  acked: number;
  nacked: number;
  timeouts: number;
  deadLettered: number;
  claimed: number;
  fastPath: number;
  fly: number;
  /** Fly pushes not made: their group had no rate left (a fly message is pushed once or never). */
  flyOverRate: number;
  /** Claimed rows another claimer held: one declared dead (a takeover) or one whose lease ran out. */
  takenOver: number;
  /** Held deliveries not pushed because their lease ran out first (this node paused or cut off). */
  leaseLapsed: number;
}

/** Delivery engine of one node (see module comment). */
export class Dispatcher {
  /** Per-group counters (metrics and the admin API's rates). */
  readonly groupCounters = new GroupCounters();
  /** Claim statement time, and store (fast path) or createTime (claimed) to first push. */
  readonly latency = { claim: new LatencyHistogram(), publishToDeliver: new LatencyHistogram() };

  /** Deliveries this node holds per group, all shards (heartbeat stats: the in-flight gauge). */
  heldCounts(): Map<string, number> {
    const m = new Map<string, number>();
    for (const h of this.held) for (const g of h.groups()) m.set(g, (m.get(g) ?? 0) + h.countOf(g));
    return m;
  }

  /** What a forced stop leaves behind: outcomes not written, deliveries still claimed here. */
  leftBehind(): { unwrittenOutcomes: number; heldDeliveries: number } {
    return {
      unwrittenOutcomes: this.outcomes.reduce((n, o) => n + o.unwritten, 0),
      heldDeliveries: this.held.reduce((n, h) => n + h.size, 0),
    };
  }

  /** Consumer connections of this node per group (the admin API). */
  consumerCounts(): Map<string, number> {
    const m = new Map<string, number>();
    for (const g of this.groups.values()) if (g.sessions.length > 0) m.set(g.id, g.sessions.length);
    return m;
  }
  readonly counters: DeliveryCounters = {
    pushed: 0,
    acked: 0,
    nacked: 0,
    timeouts: 0,
    deadLettered: 0,
    claimed: 0,
    fastPath: 0,
    fly: 0,
    flyOverRate: 0,
    takenOver: 0,
    leaseLapsed: 0,
  };
  /** Added up by every claim (see ClaimTally); logged at most once a second. */
  private readonly claimTally: ClaimTally = { takenOver: 0 };
  private takenOverLogged = 0;
  private takenOverLoggedAt = 0;
  private takenOverFlush: NodeJS.Timeout | undefined;
  private matcher = new BindingMatcher([]);
  private boundGroups = new Set<string>();
  private readonly groups = new Map<string, LocalGroup>();
  private readonly inFlight = new Map<Session, Map<number, InFlight>>();
  /** Everything this node holds a claim on, per shard (a messagePk is unique only within a shard). */
  private readonly held: HeldJobs[];
  /** Pushes that timed out recently, by session and opaque, for late acks. */
  private readonly timedOut = new Map<string, TimedOutPush>();
  /** How fast each consumer connection answers (its bound on unanswered pushes). */
  private readonly paces = new Map<Session, AnswerPace>();
  /** One outcome writer per shard (each batches its own shard's acks, nacks and releases). */
  private readonly outcomes: OutcomeWriter[];
  private readonly pools: readonly pg.Pool[];
  /** Claims skip a shard that failed on its connection until then (epoch ms), per shard. */
  private readonly claimDownUntil: number[];
  /** Per shard: when its last claim pass succeeded (epoch ms; 0: none yet). */
  private readonly claimOkAt: number[];
  /**
   * Per shard: the start of the outage its claims fail in or just came back from (its last
   * successful claim: the outage began after it; 0: none), and until when, after it answered
   * again, other claimers' leases that ran out since are left to their holders (0: not yet).
   */
  private readonly outageFrom: number[];
  private readonly outageGraceUntil: number[];
  /** The shard the next claim pass starts with (round robin). */
  private claimTurn = 0;
  /** A shard that is down fails every claim pass: a few lines, then summaries. */
  private readonly shardLog: RateLimitedLog;
  private readonly timers: NodeJS.Timeout[] = [];
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Number.POSITIVE_INFINITY;
  private probeTimer: NodeJS.Timeout | undefined;
  private lastProbeAt = 0;
  /** Push-timeout sweeps: their interval, and when the last one ran (stall detection). */
  private sweepMs = 100;
  private lastSweepAt = 0;
  /** The `now` of the last claim query: what falls due after it is the probe's business. */
  private lastClaimNow = 0;
  private probing = false;
  private claiming = false;
  private claimAgain = false;
  private stopped = false;
  /** LEASE_MARGIN_MS, or a quarter of a short lease (with 1 s, a margin of 1 s would push nothing). */
  private readonly leaseMarginMs: number;
  private wake: WakeSource | undefined;

  constructor(private readonly o: DispatcherOptions) {
    this.leaseMarginMs = Math.min(LEASE_MARGIN_MS, o.leaseMs / 4);
    this.pools = o.pools ?? [o.pool];
    this.outcomes = this.pools.map((p) => new OutcomeWriter(p, o.nodeId, o.log));
    this.claimDownUntil = this.pools.map(() => 0);
    this.claimOkAt = this.pools.map(() => 0);
    this.outageFrom = this.pools.map(() => 0);
    this.outageGraceUntil = this.pools.map(() => 0);
    this.held = this.pools.map(() => new HeldJobs());
    this.shardLog = new RateLimitedLog(o.log, { first: 3, intervalMs: 30_000 });
  }

  /**
   * Start claiming: subscribe to `wake` (none: poll only), and run the poll, lease renewal and
   * expiry timers. What an earlier run of this node still holds is free to claim already: taking
   * the liveness lock declared that run dead (store/liveness.ts).
   */
  async start(wake: WakeSource | undefined): Promise<void> {
    this.wake = wake;
    wake?.onDue(() => this.requestClaim());
    this.timers.push(setInterval(() => this.requestClaim(), this.o.pollMs));
    this.timers.push(
      setInterval(
        () => {
          void this.renewLeases();
          this.forgetTimedOut(Date.now());
          this.logTakenOver();
        },
        Math.max(250, this.o.leaseMs / 3),
      ),
    );
    // Push timeouts: one sweep instead of a timer per push (a timer object and a closure for each
    // of tens of thousands of pushes a second). A push times out at most a tenth of the delivery
    // timeout (at most 100 ms) late.
    this.sweepMs = Math.min(100, Math.max(5, Math.floor(this.o.deliveryTimeoutMs / 10)));
    this.lastSweepAt = Date.now();
    this.timers.push(setInterval(() => this.sweepTimeouts(Date.now()), this.sweepMs));
    for (const t of this.timers) t.unref();
  }

  /** Replace the bindings (from the bindings table). */
  setBindings(bindings: readonly Binding[]): void {
    this.matcher = new BindingMatcher(bindings);
    this.boundGroups = new Set(bindings.map((b) => b.groupId));
    for (const g of this.groups.values()) g.setWatermark(this.watermarkOf(g.id));
    this.requestClaim();
  }

  get bindings(): readonly Binding[] {
    return this.matcher.bindings;
  }

  /** A connection finished its handshake: it may consume for its group. */
  addSession(session: Session): void {
    const groupId = session.groupId;
    if (groupId === undefined) return;
    let g = this.groups.get(groupId);
    if (g === undefined) {
      g = new LocalGroup(groupId, this.watermarkOf(groupId));
      this.groups.set(groupId, g);
    }
    g.sessions.push(session);
    this.inFlight.set(session, new Map());
    this.paces.set(session, new AnswerPace());
    this.requestClaim();
  }

  /** A connection closed: its unanswered pushes failed; a group with no connection left lets go. */
  removeSession(session: Session): void {
    const flights = this.inFlight.get(session);
    this.inFlight.delete(session);
    this.paces.delete(session);
    const groupId = session.groupId;
    const g = groupId === undefined ? undefined : this.groups.get(groupId);
    if (g === undefined) return;
    g.sessions = g.sessions.filter((s) => s !== session);
    for (const f of flights?.values() ?? []) {
      g.inFlight--;
      f.job.inFlight = false;
      this.nack(f.job, f.pushedAt, "connection closed before the ack");
    }
    if (g.sessions.length === 0) {
      for (const job of g.drainQueue()) this.release(job);
      if (g.inFlight === 0) this.groups.delete(g.id);
    } else {
      this.pump(g);
    }
  }

  /** Groups owed a committed message, pre-claimed by this node where it has a consumer with room. */
  planDeliveries(header: NormalisedHeader): { groupId: string; claimedBy: string | null }[] {
    const bound = this.matcher.groupsFor(header.topic, header.messageType);
    if (bound.length === 0) return [];
    const plan: { groupId: string; claimedBy: string | null }[] = [];
    for (const b of bound) {
      const g = this.groups.get(b.groupId);
      const online = g !== undefined && g.sessions.length > 0;
      if (!b.persistent && !online && this.o.nonPersistentNeedsLocalConsumer) continue;
      // Room is checked, not reserved: a batch may overshoot the prefetch bound by what is
      // planned before its commit, which keeps planning free of bookkeeping that could leak.
      // A delayed message is never pre-claimed: its deliveries wait in the table until due.
      const local = online && !this.stopped && header.deliverAt === null && g.hasRoom();
      plan.push({ groupId: b.groupId, claimedBy: local ? this.o.claimer : null });
    }
    return plan;
  }

  /**
   * After a publish batch was written: push the deliveries this node pre-claimed, from memory
   * (records not stored, duplicates or a failed write, have nothing to push).
   */
  afterWrite(
    records: readonly PublishRecord[],
    results: readonly (PublishResult | undefined)[] | undefined,
    shard = 0,
  ): void {
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      const pk = results?.[i]?.pk;
      if (pk === undefined) continue;
      const mine: string[] = [];
      for (const d of record.deliveries) if (d.claimedBy === this.o.claimer) mine.push(d.groupId);
      if (mine.length === 0) continue;
      const leaseUntilMs = results?.[i]?.leaseUntilMs ?? Date.now() + this.o.leaseMs;
      for (const job of jobsFromPublish(record, pk, mine, shard, leaseUntilMs)) {
        const g = this.groups.get(job.groupId);
        this.counters.fastPath++;
        this.hold(job);
        if (g === undefined || g.sessions.length === 0) this.release(job);
        else g.enqueue(job);
      }
    }
    for (const g of this.groups.values()) this.pump(g);
  }

  /** Push deliveries committed elsewhere (2PC commit) that this node pre-claimed. */
  afterCommit(stored: { record: PublishRecord; pk: number }[], shard = 0): void {
    this.afterWrite(
      stored.map((s) => s.record),
      stored.map((s) => ({ messageId: s.record.messageId, pk: s.pk, duplicate: false })),
      shard,
    );
  }

  /** A fly message: one push to one connection of each bound group here; not stored, not retried. */
  deliverFly(header: NormalisedHeader, body: Buffer, isString: boolean): void {
    const wire: Header = {
      messageId: header.messageId,
      topic: header.topic,
      messageType: header.messageType,
      expiredTime: Math.floor(header.expiresAt.getTime() / 1000),
      deliverLimit: header.deliverLimit,
      groupId: header.groupId,
      commit: true,
      fly: true,
      properties: header.properties,
      createTime: Math.floor(header.createdAt.getTime() / 1000),
      snappy: header.snappy,
    };
    const now = Date.now();
    for (const b of this.matcher.groupsFor(header.topic, header.messageType)) {
      const g = this.groups.get(b.groupId);
      if (g === undefined) continue;
      // The group's watermark holds for fly pushes too (they went past it: 1,856/s against a
      // watermark of 100); over it, a fly message is not pushed (it is never stored to retry).
      if (!g.bucket.tryTake(1, now)) {
        this.counters.flyOverRate++;
        continue;
      }
      const session = this.pick(g.sessions, now);
      if (session === undefined) continue;
      this.counters.fly++;
      this.send(session, wire, body, isString, session.allocateOpaque());
    }
  }

  /** A consumer's DELIVER_ACK. */
  onDeliverAck(session: Session, opaque: number, ack: DeliverAck): void {
    const flights = this.inFlight.get(session);
    const f = flights?.get(opaque);
    if (f === undefined) {
      const late = this.timedOut.get(timedOutKey(session, opaque));
      if (late !== undefined && ack.status && late.messageId === ack.messageId) {
        // Invariant 6: an ack that comes after its push timed out (and was nacked) still ends
        // the delivery — the group did process the message — whoever holds it now, if it is
        // still owed (dead-lettered or expired meanwhile, it is recorded after that end). Counted
        // as acked when the history has it (before, /metrics counted acks the history never had,
        // and then missed the late acks recorded after a dead-lettering).
        this.timedOut.delete(timedOutKey(session, opaque));
        const groupId = late.groupId;
        this.outcomes[late.shard]!.ack(
          {
            messagePk: late.messagePk,
            groupId: late.groupId,
            attempt: late.attempt,
            // The timeout's nack already wrote this push's `delivered` row.
            pushedAt: null,
            ackedAt: new Date(),
          },
          (ended) => {
            if (!ended) return;
            this.counters.acked++;
            this.groupCounters.of(groupId).acked++;
          },
        );
        return;
      }
      // A fly message's ack, or a false answer after the timeout (that attempt was nacked).
      session.log.debug({ opaque, messageId: ack.messageId }, "ack for no push in flight, ignored");
      return;
    }
    flights!.delete(opaque);
    f.group.inFlight--;
    f.job.inFlight = false;
    this.paces.get(session)?.answered(Date.now());
    if (ack.status) {
      this.counters.acked++;
      this.groupCounters.of(f.job.groupId).acked++;
      const job = f.job;
      const group = f.group;
      job.ackPending = true;
      group.acksUnwritten++;
      this.outcomes[job.shard]!.ack(
        {
          messagePk: job.messagePk,
          groupId: job.groupId,
          attempt: job.attempts + 1,
          pushedAt: new Date(f.pushedAt),
          ackedAt: new Date(),
        },
        () => {
          this.unhold(job);
          // Past the free allowance, a written ack gives its room back: use it.
          if (group.acksUnwritten-- > UNWRITTEN_ACKS_FREE) {
            this.pump(group);
            if (group.wantsMore()) this.requestClaim();
          }
        },
      );
    } else {
      const feedback = ack.feedback ? `: ${storableFeedback(ack.feedback)}` : "";
      this.nack(f.job, f.pushedAt, `consumer answered false${feedback}`);
    }
    this.pump(f.group);
    if (f.group.wantsMore()) this.requestClaim();
  }

  /**
   * Another node is gone: declare its current run dead in every shard, so every node's next claim
   * takes its deliveries at once instead of after its lease. Returns how many shards listed it.
   */
  async takeOverNode(nodeId: string): Promise<number> {
    let n = 0;
    const failed: unknown[] = [];
    const now = new Date();
    const until = new Date(now.getTime() + this.o.leaseMs);
    // Every shard: a dead node's claims are wherever its deliveries were. A shard that is down
    // keeps them until it is back (its maintenance node declares the run dead then, by its lock).
    for (const pool of this.pools) {
      try {
        n += (await declareNodeDead(pool, { nodeId, now, until, except: this.o.claimer })).length;
      } catch (err) {
        if (this.pools.length === 1) throw err;
        failed.push(err);
      }
    }
    if (failed.length > 0) {
      this.o.log.warn(
        { gone: nodeId, failedShards: failed.length, err: String(failed[0]) },
        "could not declare a gone node dead in every shard",
      );
    }
    if (n > 0) this.o.log.info({ gone: nodeId }, "a node is gone: its deliveries are claimed again now");
    // Claim even when another node declared it first (every node hears of the same death).
    this.requestClaim();
    return n;
  }

  /** Log what claims took over from other claimers since the last line (at most one a second). */
  private logTakenOver(): void {
    const n = this.claimTally.takenOver - this.takenOverLogged;
    if (n === 0) return;
    this.counters.takenOver = this.claimTally.takenOver;
    const now = Date.now();
    if (now - this.takenOverLoggedAt < 1000) {
      // The rest goes out in one line when the second is up.
      this.takenOverFlush ??= setTimeout(
        () => {
          this.takenOverFlush = undefined;
          this.logTakenOver();
        },
        1000 - (now - this.takenOverLoggedAt),
      );
      return;
    }
    this.takenOverLogged = this.claimTally.takenOver;
    this.takenOverLoggedAt = now;
    this.o.log.info(
      { code: "KQ_TAKEN_OVER", deliveries: n },
      "claimed deliveries another node held (it is gone, or its lease ran out)",
    );
  }

  /** Claim due deliveries soon (coalesced: one claim query runs at a time). */
  requestClaim(): void {
    if (this.stopped) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = true;
    void this.claimLoop();
  }

  /** Stop claiming; release every claim held (no attempt spent); wait for outcome writes. */
  /**
   * Stop pushing and claiming; wait up to `drainMs` for the answers of the pushes in flight (their
   * consumers are working on them: released at once, they were delivered again elsewhere or after
   * a restart, so a rolling restart duplicated them); release what is held.
   */
  async stop(drainMs = 0): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.wakeTimer);
    clearTimeout(this.probeTimer);
    clearTimeout(this.takenOverFlush);
    await this.wake?.close().catch(() => undefined);
    while (this.claiming) await new Promise((r) => setTimeout(r, 10));
    const inFlightAtStop = this.pushesInFlight();
    if (drainMs > 0 && inFlightAtStop > 0) {
      const deadline = Date.now() + drainMs;
      while (this.pushesInFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const unanswered = this.pushesInFlight();
      this.o.log.info(
        { inFlight: inFlightAtStop, answered: inFlightAtStop - unanswered, unanswered, drainMs },
        "waited for the answers of pushes in flight",
      );
    }
    // Pushes still unanswered went out: recorded as a push that failed (a `delivered` and a
    // `nacked` row, an attempt spent), as when a consumer's connection closes before its ack;
    // released without a trace, the history showed no delivery at all.
    const unanswered: InFlight[] = [];
    for (const flights of this.inFlight.values()) {
      for (const f of flights.values()) {
        f.group.inFlight--;
        f.job.inFlight = false;
        unanswered.push(f);
      }
      flights.clear();
    }
    for (const f of unanswered) this.nack(f.job, f.pushedAt, "node stopped before the ack");
    const nacked = new Set(unanswered.map((f) => f.job));
    const releasing = this.held.flatMap((h) => [...h.values()]).filter((job) => !nacked.has(job));
    for (const job of releasing) this.release(job);
    await Promise.all(this.outcomes.map((o) => o.drain()));
    this.shardLog.close();
    if (releasing.length > 0 || unanswered.length > 0) {
      this.o.log.info(
        { released: releasing.length, unansweredPushes: unanswered.length },
        "released held deliveries (pushes still unanswered recorded as failed)",
      );
    }
  }

  /**
   * Claim passes until no group with room has a backlog. Each pass claims from every shard in turn
   * (round robin: the pass starts one shard further each time), the k-th of n taking at most
   * 1/(n-k) of a group's room left, so busy shards share the room equally and none can keep it to
   * itself; a shard that failed on its connection in the last second is skipped. Flow control
   * (room, watermark) stays per group and node across all shards.
   */
  private async claimLoop(): Promise<void> {
    try {
      const n = this.pools.length;
      do {
        this.claimAgain = false;
        const first = this.claimTurn;
        this.claimTurn = (first + 1) % n;
        let claimedAny = false;
        const asked = new Set<string>();
        const full = new Set<string>();
        for (let k = 0; k < n && !this.stopped; k++) {
          const shard = (first + k) % n;
          if (n > 1 && this.claimDownUntil[shard]! > Date.now()) continue;
          const groups: string[] = [];
          const limits: number[] = [];
          // The k-th shard of a pass may take 1/(n-k) of the room left: shares of a busy pass are
          // equal, and a shard with nothing due leaves its share to the next (one shard: all of it).
          const share = n - k;
          for (const g of this.groups.values()) {
            // Only groups that have a consumer here and are bound to something can be owed anything.
            if (g.sessions.length === 0 || !this.boundGroups.has(g.id)) continue;
            const room = Math.min(share === 1 ? g.room() : Math.ceil(g.room() / share), CLAIM_BATCH);
            if (room <= 0) continue;
            groups.push(g.id);
            limits.push(room);
          }
          if (groups.length === 0) break;
          const now = Date.now();
          const claimStart = performance.now();
          this.lastClaimNow = now;
          let rows: ClaimedDelivery[];
          // Just after an outage of this store (or shard): leave the leases that ran out during it
          // to their holders for a while (their acks wait to be written, their renewals to run).
          // Taken at once, what their consumers had answered was pushed again by this node (995
          // after a 53 s outage in a walkthrough, 40 of 40 in test/e2e/outage-lapsed-leases.test.ts).
          const outageFrom = this.outageFrom[shard]!;
          const inGrace =
            outageFrom !== 0 && (this.outageGraceUntil[shard] === 0 || now < this.outageGraceUntil[shard]!);
          const claim = claimDueDeliveries(this.pools[shard]!, {
            groups,
            limits,
            now: new Date(now),
            claimer: this.o.claimer,
            leaseUntil: new Date(now + this.o.leaseMs),
            nodeId: this.o.nodeId,
            tally: this.claimTally,
            ...(inGrace ? { leasesLapsedBefore: new Date(outageFrom) } : {}),
          });
          try {
            rows = n === 1 ? await claim : await withDeadline(claim, SHARD_ANSWER_MS);
          } catch (err) {
            this.claimFailing(shard);
            if (n === 1) throw err;
            if (err instanceof DeadlineExceeded) {
              // A shard that hangs (its server paused, a network that drops packets) must not hold
              // up the others: go on, and take what it claimed whenever it answers.
              claim.then(
                (late) => {
                  this.takeClaimed(late, shard, now + this.o.leaseMs);
                  for (const g of this.groups.values()) this.pump(g);
                },
                () => undefined,
              );
            }
            this.shardClaimFailed(shard, err);
            continue;
          }
          this.claimOkAt[shard] = now;
          if (outageFrom !== 0) {
            if (this.outageGraceUntil[shard] === 0) {
              this.outageGraceUntil[shard] = Date.now() + this.outageGraceMs();
            } else if (!inGrace) {
              this.outageFrom[shard] = 0;
              this.outageGraceUntil[shard] = 0;
            }
          }
          this.latency.claim.since(claimStart, performance.now());
          this.counters.claimed += rows.length;
          this.logTakenOver();
          if (rows.length > 0) claimedAny = true;
          const got = this.takeClaimed(rows, shard, now + this.o.leaseMs);
          groups.forEach((id, i) => {
            asked.add(id);
            if ((got.get(id) ?? 0) >= limits[i]!) full.add(id);
          });
          for (const g of this.groups.values()) this.pump(g);
        }
        for (const id of asked) {
          const g = this.groups.get(id);
          if (g !== undefined) g.backlog = full.has(id);
        }
        if (claimedAny && [...this.groups.values()].some((g) => g.backlog && g.room() > 0)) {
          this.claimAgain = true;
        }
      } while (this.claimAgain && !this.stopped);
      this.probeNextDue();
    } catch (err) {
      const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
      // Once a second while PostgreSQL is away: the first lines, then a count every 30 s.
      this.shardLog.error(
        `claim ${e.code}`,
        { code: e.code, err: e.message },
        "claiming deliveries failed, retrying",
      );
      if (!this.stopped) this.scheduleWake(Date.now() + 1000);
    } finally {
      this.claiming = false;
    }
  }

  /** Hold and queue what was claimed in `shard` (released at once for a group gone from here). */
  private takeClaimed(
    rows: readonly ClaimedDelivery[],
    shard: number,
    leaseUntilMs: number,
  ): Map<string, number> {
    const got = new Map<string, number>();
    for (const row of rows) {
      got.set(row.groupId, (got.get(row.groupId) ?? 0) + 1);
      // Claimed again while our consumer's ack of it waits to be written (the database was away
      // longer than the lease): that ack ends it, whatever the claim. Pushed again, the consumer
      // handled an acked message twice (a walkthrough: 29 after a 40 s outage).
      const held = this.held[shard]!.get(row.groupId, row.messagePk);
      if (held?.ackPending === true) continue;
      // Claimed again while its push awaits an answer, no attempt recorded since (nobody else
      // pushed it): that push goes on under this claim, its outcome written with the new epoch.
      // Pushed again, the consumer got it twice.
      if (held?.inFlight === true && held.attempts === row.attempts) {
        held.claimEpoch = row.claimEpoch;
        held.leaseUntilMs = leaseUntilMs;
        continue;
      }
      const job = jobFromClaim(row, shard, leaseUntilMs);
      this.hold(job);
      const g = this.groups.get(job.groupId);
      if (g === undefined || g.sessions.length === 0 || this.stopped) this.release(job);
      else g.enqueue(job);
    }
    return got;
  }

  /** A claim on one shard failed: skip it for a second (rate-limited line), the others go on. */
  private shardClaimFailed(shard: number, err: unknown): void {
    const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
    this.claimDownUntil[shard] = Date.now() + 1000;
    this.shardLog.error(
      `claim shard ${shard}`,
      { code: e.code, shard, err: e.message },
      `claiming deliveries in shard ${shard} failed; the other shards go on, retrying it in 1 s`,
    );
    if (!this.stopped) this.scheduleWake(Date.now() + 1000);
  }

  /** A claim pass on `shard` failed: an outage, begun after its last successful claim. */
  private claimFailing(shard: number): void {
    if (this.outageFrom[shard] === 0) this.outageFrom[shard] = this.claimOkAt[shard] || Date.now();
    this.outageGraceUntil[shard] = 0;
  }

  /**
   * How long after a shard's outage other nodes' claims that ran out during it are left alone: one
   * lease, and at least the outcome writers' longest retry delay and a second.
   */
  private outageGraceMs(): number {
    return Math.max(this.o.leaseMs, MAX_RETRY_DELAY_MS + 1000);
  }

  private pushesInFlight(): number {
    let n = 0;
    for (const flights of this.inFlight.values()) n += flights.size;
    return n;
  }

  /**
   * This node was declared dead (its liveness lock was gone a while): others may be taking over
   * what it holds, so nothing queued is pushed from here (each is released instead, fenced; pushes
   * in flight are answered and recorded as usual, fenced).
   */
  dropHeld(): void {
    for (const h of this.held) for (const job of h.values()) job.leaseUntilMs = 0;
    for (const g of this.groups.values()) this.pump(g);
  }

  /** Push what the group's flow control allows. */
  private pump(g: LocalGroup): void {
    if (this.stopped) return;
    const now = Date.now();
    let lostDraws = 0;
    while (g.queued > 0 && g.inFlight < g.maxInFlight) {
      const job = g.peek()!;
      if (job.expiresAtMs <= now) {
        g.shift();
        // The expiry sweep (maintenance node) records it; let go of the claim so it is not blocked.
        this.release(job);
        continue;
      }
      if (job.leaseUntilMs - this.leaseMarginMs <= now) {
        // Our claim has lapsed (no renewal found the row ours: this node was paused, or cut off
        // from the database): another node may have taken it over and delivered it. Not pushed
        // from here; the release (fenced: a no-op if taken) frees it for the next claim.
        g.shift();
        this.counters.leaseLapsed++;
        this.shardLog.warn(
          "lease lapsed",
          { code: ErrorCode.StoreFailed, groupId: job.groupId, messageId: job.header.messageId },
          "a held delivery's lease ran out before its push (node paused, or the database out of reach): not pushed, left to the next claim",
        );
        this.release(job);
        continue;
      }
      // The consumers that can take one more: fewer unanswered pushes than they answer in half
      // the delivery timeout (answer-pace.ts). None: their answers pump again.
      const open = this.withRoom(g, now);
      if (open.length === 0) {
        g.schedulePump(g.sessions.length === 0 ? 100 : 20, () => this.pump(g));
        return;
      }
      if (!g.bucket.tryTake(1, now)) {
        g.schedulePump(g.bucket.msUntilAvailable(1, now), () => this.pump(g));
        return;
      }
      const session = this.pick(open, now);
      if (session === undefined) {
        // Every consumer is warming and lost its draw: this push's share of the group's rate is
        // spent (KiteQ skips the push), so the group gets weight x its rate. Bounded per turn for
        // a group without a rate cap.
        if (++lostDraws < MAX_LOST_DRAWS_PER_PUMP) continue;
        g.schedulePump(10, () => this.pump(g));
        return;
      }
      g.shift();
      this.push(g, job, session, now);
    }
  }

  /** The group's connections below their bound on unanswered pushes. */
  private withRoom(g: LocalGroup, now: number): readonly Session[] {
    // One connection (the common case): no list and no closure built for every push.
    if (g.sessions.length === 1) return this.hasRoom(g.sessions[0]!, now) ? g.sessions : [];
    return g.sessions.filter((s) => this.hasRoom(s, now));
  }

  private hasRoom(s: Session, now: number): boolean {
    const limit = this.paces.get(s)?.limit(now, this.o.deliveryTimeoutMs / 2) ?? MIN_UNANSWERED;
    return (this.inFlight.get(s)?.size ?? 0) < limit;
  }

  private pick(sessions: readonly Session[], now: number): Session | undefined {
    // One warm connection (the common case): what pickConnection would choose, without building
    // its candidate list for every push.
    const only = sessions.length === 1 ? sessions[0]! : undefined;
    if (only !== undefined && warmupWeight(only.connectedAtMs, only.warmingupSec, now) >= 1) return only;
    return pickConnection(
      sessions.map((s) => ({
        conn: s,
        connectedAtMs: s.connectedAtMs,
        warmingupSec: s.warmingupSec,
        inFlight: this.inFlight.get(s)?.size ?? 0,
      })),
      now,
    );
  }

  private push(g: LocalGroup, job: DeliveryJob, session: Session, now: number): void {
    const opaque = session.allocateOpaque();
    this.send(session, job.header, job.body, job.isString, opaque, job.wire);
    this.counters.pushed++;
    const gc = this.groupCounters.of(job.groupId);
    gc.pushed++;
    if (job.attempts > 0) gc.redelivered++;
    else this.latency.publishToDeliver.since(job.storedAtMs ?? job.header.createTime * 1000, now);
    g.inFlight++;
    job.inFlight = true;
    this.inFlight
      .get(session)
      ?.set(opaque, { job, group: g, pushedAt: now, deadline: now + this.o.deliveryTimeoutMs });
  }

  private send(
    session: Session,
    header: Header,
    body: Buffer,
    isString: boolean,
    opaque: number,
    wire: WireCache = {},
  ): void {
    wire.bytes ??= isString
      ? encodeStringMessage({ header, body: body.toString("utf8") })
      : encodeBytesMessage({ header, body });
    session.send(isString ? CommandType.STRING_MESSAGE : CommandType.BYTES_MESSAGE, opaque, wire.bytes);
  }

  /**
   * Time out the pushes whose deadline passed. A session's map holds its pushes in push order,
   * and every push gets the same timeout, so each scan stops at the first one still running.
   */
  private sweepTimeouts(now: number): void {
    const stalledMs = now - this.lastSweepAt - this.sweepMs;
    this.lastSweepAt = now;
    if (stalledMs >= STALL_MS) {
      // The node did not run for stalledMs: answers may wait unread in its sockets (timers run
      // before the poll phase reads them), and a push written just before the stall reached its
      // consumer only now. Timed out here, each was nacked and redelivered though its consumer
      // had acked it (a walkthrough: a node paused 20 s). The node's own absence is not the
      // consumer's: every push gets that time back, and the answers are read before the next sweep.
      for (const flights of this.inFlight.values()) for (const f of flights.values()) f.deadline += stalledMs;
      this.o.log.warn(
        { stalledMs, pushesInFlight: this.pushesInFlight() },
        "this node did not run for a while (paused, or starved of CPU): its pushes' timeouts moved on by as much",
      );
      return;
    }
    for (const [session, flights] of this.inFlight) {
      const due: number[] = [];
      for (const [opaque, f] of flights) {
        if (f.deadline > now) break;
        due.push(opaque);
      }
      for (const opaque of due) this.onTimeout(session, opaque);
    }
  }

  private onTimeout(session: Session, opaque: number): void {
    const flights = this.inFlight.get(session);
    const f = flights?.get(opaque);
    if (f === undefined) return;
    flights!.delete(opaque);
    f.group.inFlight--;
    f.job.inFlight = false;
    this.counters.timeouts++;
    this.nack(f.job, f.pushedAt, `no ack within ${this.o.deliveryTimeoutMs} ms`);
    // Remember it for a while: a late true ack still ends the delivery (see onDeliverAck).
    // Only what the ack needs, not the job: the job holds the body and its encoded push, and a
    // consumer that never acks made the window hold a copy per push (2.6 GB from one connection
    // of 800 messages of 256 kB, as every claim reads the body again).
    this.timedOut.set(timedOutKey(session, opaque), {
      shard: f.job.shard,
      messagePk: f.job.messagePk,
      groupId: f.job.groupId,
      messageId: f.job.header.messageId,
      attempt: f.job.attempts + 1,
      forgetAt: Date.now() + LATE_ACK_WINDOW_FACTOR * this.o.deliveryTimeoutMs,
    });
    this.pump(f.group);
  }

  private nack(job: DeliveryJob, pushedAt: number, reason: string): void {
    const attempt = job.attempts + 1;
    const deadLetter = attempt >= job.deliverLimit;
    const now = Date.now();
    const next = now + redeliveryDelayMs(attempt, this.o.redelivery);
    this.outcomes[job.shard]!.nack(
      {
        messagePk: job.messagePk,
        groupId: job.groupId,
        claimEpoch: job.claimEpoch,
        attempt,
        pushedAt: new Date(pushedAt),
        failedAt: new Date(now),
        nextAttemptAt: new Date(next),
        deadLetter,
        reason,
      },
      (deadLettered) => {
        // Counted once written: a nack at the limit whose delivery an ack ended first is a nack
        // in the history, not a dead letter.
        const group = this.groupCounters.of(job.groupId);
        if (deadLettered) {
          this.counters.deadLettered++;
          group.deadLettered++;
        } else {
          this.counters.nacked++;
          group.nacked++;
        }
        this.unhold(job);
        if (!deadLetter) this.scheduleWake(next);
      },
    );
  }

  private release(job: DeliveryJob): void {
    this.outcomes[job.shard]!.release(job, () => {
      this.unhold(job);
      this.requestClaim();
    });
  }

  private hold(job: DeliveryJob): void {
    this.held[job.shard]!.add(job);
  }

  private unhold(job: DeliveryJob): void {
    this.held[job.shard]!.remove(job);
  }

  /**
   * Ask the table when the next delivery of the groups consuming here falls due (a delayed
   * message, a scheduled retry) and wake the claim loop then: a delayed delivery is claimed
   * within milliseconds of its time, not at the next poll. Rate-limited; a probe asked for
   * meanwhile runs once the interval has passed.
   */
  private probeNextDue(): void {
    if (this.stopped || this.probing || this.probeTimer !== undefined) return;
    const wait = this.lastProbeAt + NEXT_DUE_PROBE_MS - Date.now();
    if (wait > 0) {
      this.probeTimer = setTimeout(() => {
        this.probeTimer = undefined;
        this.probeNextDue();
      }, wait);
      this.probeTimer.unref();
      return;
    }
    const groups: string[] = [];
    for (const g of this.groups.values()) {
      if (g.sessions.length > 0 && this.boundGroups.has(g.id)) groups.push(g.id);
    }
    if (groups.length === 0) return;
    this.lastProbeAt = Date.now();
    this.probing = true;
    // After the last claim's own `now`, not the probe's: a delivery that fell due in between (the
    // probe may run up to NEXT_DUE_PROBE_MS later) is found too, and claimed at once.
    const after = new Date(this.lastClaimNow > 0 ? this.lastClaimNow : this.lastProbeAt);
    const probe =
      this.pools.length === 1
        ? nextDueAfter(this.o.pool, groups, after)
        : // The earliest over the shards; a shard that is down is asked again at the next probe.
          Promise.allSettled(
            this.pools.map((p) => withDeadline(nextDueAfter(p, groups, after), SHARD_ANSWER_MS)),
          ).then((all) => {
            let at: Date | undefined;
            for (const r of all) {
              if (r.status === "fulfilled" && r.value !== undefined && (at === undefined || r.value < at)) {
                at = r.value;
              }
            }
            return at;
          });
    probe
      .then(
        (at) => {
          if (at !== undefined) this.scheduleWake(at.getTime());
        },
        (err: unknown) => this.o.log.debug({ err: String(err) }, "next-due probe failed"),
      )
      .finally(() => {
        this.probing = false;
      });
  }

  /** Wake the claim loop at `at` (earliest wins). */
  private scheduleWake(at: number): void {
    if (this.stopped) return;
    if (at <= Date.now()) {
      this.requestClaim();
      return;
    }
    if (at >= this.wakeAt) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeAt = Number.POSITIVE_INFINITY;
      this.requestClaim();
    }, at - Date.now());
    this.wakeTimer.unref();
  }

  private forgetTimedOut(now: number): void {
    for (const [key, t] of this.timedOut) if (t.forgetAt <= now) this.timedOut.delete(key);
  }

  private async renewLeases(): Promise<void> {
    if (this.stopped || this.held.every((h) => h.size === 0)) return;
    const leaseUntil = new Date(Date.now() + this.o.leaseMs);
    // Each shard its own jobs (one statement per shard); a shard that is down fails alone.
    const byShard = this.held.map((h) => [...h.values()]);
    await Promise.all(
      byShard.map(async (jobs, shard) => {
        if (jobs.length === 0) return;
        const log = (err: unknown) => {
          const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
          this.shardLog.error(
            `lease renewal ${shard}`,
            { code: e.code, err: e.message, shard },
            "lease renewal failed",
          );
        };
        try {
          // A failed batch is logged and the next one tried; once stopping (the pools closing),
          // the first failure ends the renewal instead.
          const renewed = await renewHeldLeases(
            this.pools[shard]!,
            this.o.claimer,
            jobs,
            leaseUntil,
            (err) => {
              if (this.stopped) throw err;
              log(err);
            },
          );
          // Only the rows still ours: one taken over meanwhile keeps its old lease, and lapses here.
          for (const job of jobs) if (renewed.has(deliveryKey(job))) job.leaseUntilMs = leaseUntil.getTime();
        } catch (err) {
          if (!this.stopped) log(err);
        }
      }),
    );
  }

  private watermarkOf(groupId: string): number {
    return effectiveWatermark(this.matcher.bindings, groupId, this.o.maxWatermark ?? KITEQ_MAX_WATERMARK);
  }
}
