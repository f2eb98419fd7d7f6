/**
 * Maintenance of one node: its liveness lock, and the cluster-wide jobs it runs while it holds the
 * maintenance lock (one node at a time; another takes over within `leaderRetryMs` when it dies):
 *
 * - takeover: every `livenessCheckMs`, the claimers that may hold work whose liveness lock
 *   vanished under the current server start (and stayed gone LEADER_GRACE_MS) are dead: they are
 *   declared so for one lease (every node's claim then takes their deliveries at once) and their
 *   check claims are released. Every node runs this check; one that is not the leader declares
 *   only after FOLLOWER_GRACE_MS, so a leader that hangs (holding its locks) does not hold up
 *   the takeover of a dead node;
 * - expiry sweep: every `sweepMs`, owed deliveries whose message expired end `expired`;
 * - partition upkeep and retention: at leadership and hourly.
 *
 * Every job is single-flight (PeriodicJob), works in bounded batches, and runs on the maintenance
 * pool, whose statements have a statement_timeout. stop() cancels what is in flight.
 */
import type pg from "pg";
import { ErrorCode, KiteqError, toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { RateLimitedLog } from "../log-limit.js";
import { dropPartitionsBefore, ensurePartitions } from "../store/db.js";
import { expireDeliveries } from "../store/deliveries.js";
import { createClient } from "../store/failover.js";
import {
  cancelStatementsOf,
  claimerLiveness,
  declareClaimerDead,
  forgetDeadClaimers,
  markClaimerStopped,
  releaseMaintenanceLock,
  takeLivenessLock,
  tryMaintenanceLock,
} from "../store/liveness.js";
import { PeriodicJob } from "./periodic.js";

const HOUR = 3_600_000;
const EXPIRY_BATCH = 1000;
/**
 * How long a claimer's liveness lock must stay gone before the leader declares it dead: a node
 * whose liveness connection dropped reconnects at once and takes its lock again within tens of
 * ms (a kill -9 is taken over this much later: one more check).
 */
const LEADER_GRACE_MS = 250;
/** The same for the other nodes: they act only when the leader did not (it hangs, holding its lock). */
const FOLLOWER_GRACE_MS = 2_000;
/**
 * A claimer whose lock was taken under an earlier PostgreSQL start (every lock vanished with that
 * server) and is not held again this long after this node first saw it so: a live node takes its
 * lock again within a leadership tick of the server's return; one that died while the server was
 * away never does. Before, it was never declared, and its deliveries waited for their leases (a
 * walkthrough: 31.8 s with a 30 s lease, for a node killed during a 10 s outage).
 */
const RESTART_GRACE_MS = 5_000;

/** Settings of a node's Maintenance. */
export interface MaintenanceOptions {
  /** Database URL (the node's own session connection is opened on it). */
  url: string;
  /** Pool for the jobs' statements (with a statement_timeout). */
  pool: pg.Pool;
  /** application_name of `pool`'s connections (cancelled at stop). */
  poolName: string;
  nodeId: string;
  claimer: string;
  address: string;
  /** The delivery lease: a claimer declared dead is listed for this long (then its leases ran out). */
  leaseMs: number;
  log: Logger;
  /** Expiry sweep period (KiteQ recoverSeconds). */
  sweepMs: number;
  /** 0: keep the history for ever. */
  retentionDays: number;
  /** Dead-claimer check period; default 250 ms. */
  livenessCheckMs?: number;
  /** How often a node that is not the maintenance node tries to become it; default 250 ms. */
  leaderRetryMs?: number;
  /**
   * This run was declared dead while its liveness connection was down (and is not any more):
   * others may have taken over what it holds, so it must push none of it.
   */
  onDeclaredDead?: () => void;
  /** Upkeep period; default one hour. */
  upkeepMs?: number;
}

/** Counters exposed as metrics. */
export interface MaintenanceCounters {
  expired: number;
  /** Claimers declared dead (their deliveries are then claimed by whichever node claims first). */
  takeovers: number;
  takeoverChecks: number;
  /** Seconds from each dead claimer's last sign of life to its declaration. */
  takeoverSeconds: number[];
  droppedPartitions: number;
}

/** A node's liveness lock and, while it leads, the cluster-wide jobs (see module comment). */
export class Maintenance {
  readonly counters: MaintenanceCounters = {
    expired: 0,
    takeovers: 0,
    takeoverChecks: 0,
    takeoverSeconds: [],
    droppedPartitions: 0,
  };
  readonly expiry: PeriodicJob;
  readonly upkeep: PeriodicJob;
  readonly takeover: PeriodicJob;
  private readonly leadership: PeriodicJob;
  private session: pg.Client | undefined;
  private leader = false;
  private stopped = false;
  /** When each claimer's lock was last seen held (its last sign of life). */
  private readonly lastSeenAlive = new Map<string, number>();
  /** When each claimer was first seen without its lock (since last seen with it). */
  private readonly firstSeenGone = new Map<string, number>();
  private readonly log: Logger;
  /** Jobs run every 250 ms: while PostgreSQL is down their failures are summarised, not repeated. */
  private readonly failLog: RateLimitedLog;

  constructor(private readonly o: MaintenanceOptions) {
    this.log = o.log;
    this.failLog = new RateLimitedLog(o.log, { first: 3, intervalMs: 30_000 });
    const onError = (what: string) => (err: unknown) => {
      const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
      this.failLog.error(
        what,
        { code: e.code, err: e.message, job: what },
        `${what} failed; retrying at its next run`,
      );
    };
    this.expiry = new PeriodicJob(
      "expiry sweep",
      o.sweepMs,
      (stopped) => this.sweepExpired(stopped),
      onError("expiry sweep"),
    );
    this.upkeep = new PeriodicJob(
      "partition upkeep",
      o.upkeepMs ?? HOUR,
      () => this.partitionUpkeep(),
      onError("partition upkeep"),
    );
    this.takeover = new PeriodicJob(
      "takeover check",
      o.livenessCheckMs ?? 250,
      (stopped) => this.takeOverDeadClaimers(stopped),
      onError("takeover check"),
    );
    this.leadership = new PeriodicJob(
      "maintenance leadership",
      o.leaderRetryMs ?? 250,
      () => this.keepSession(),
      onError("maintenance leadership"),
    );
  }

  /** Whether this node runs the cluster-wide jobs now. */
  get isLeader(): boolean {
    return this.leader;
  }

  /** Take this run's liveness lock (start fails when it cannot), then contend for leadership. */
  async start(): Promise<void> {
    await this.openSession();
    this.leadership.start(true);
    // Every node checks its peers' liveness; the leader declares first (LEADER_GRACE_MS), the
    // others only if the leader did not (a leader that hangs keeps its lock: FOLLOWER_GRACE_MS).
    this.takeover.start(true);
    await this.leadership.trigger();
  }

  /**
   * Stop every job (cancelling their statements in flight) and give up the maintenance lock, so
   * another node leads at once. The liveness lock stays held until stop(): a node that is still
   * releasing its claims must not look dead to the others.
   */
  async stopJobs(): Promise<void> {
    this.stopped = true;
    const jobs = [this.leadership, this.expiry, this.upkeep, this.takeover];
    const stopping = Promise.all(jobs.map((j) => j.stop()));
    // Cancelled from the session connection: the jobs' pool may have no connection free.
    if (jobs.some((j) => j.busy) && this.session !== undefined) {
      await cancelStatementsOf(this.session, [this.o.poolName]).catch(() => 0);
    }
    await stopping;
    if (this.leader && this.session !== undefined) {
      await releaseMaintenanceLock(this.session).catch(() => undefined);
    }
    this.leader = false;
  }

  /** stopJobs(), then close the session connection: the liveness lock goes with it. */
  async stop(): Promise<void> {
    await this.stopJobs();
    // Stopped before the lock goes with the connection: a clean stop is not a death.
    const session = this.session;
    if (session !== undefined) {
      await markClaimerStopped(session, {
        nodeId: this.o.nodeId,
        claimer: this.o.claimer,
        now: new Date(),
      }).catch(() => undefined);
    }
    await this.closeSession();
    this.failLog.close();
  }

  /** Open the node's session connection and take its liveness lock on it. */
  private async openSession(): Promise<void> {
    // A multi-host URL: the session reconnects to whichever server is the primary now.
    const client = createClient(
      this.o.url,
      {
        application_name: `kiteq-pg ${this.o.nodeId} liveness`,
        connectionTimeoutMillis: 10_000,
        options: "-c timezone=UTC -c statement_timeout=10000 -c jit=off",
      },
      this.log,
    );
    const lost = (err?: Error) => {
      if (this.session !== client) return;
      this.session = undefined;
      if (this.leader) {
        this.leader = false;
        void this.stopLeaderJobs();
      }
      if (!this.stopped) {
        this.log.warn(
          { code: ErrorCode.StoreFailed, err: err?.message },
          "liveness connection lost: reconnecting (others may take over this node's claims meanwhile)",
        );
        // At once, not at the next tick: the others declare a lock gone for LEADER_GRACE_MS dead.
        void this.leadership.trigger();
      }
    };
    client.on("error", lost);
    client.on("end", () => lost());
    await client.connect();
    const lock = await takeLivenessLock(client, {
      nodeId: this.o.nodeId,
      claimer: this.o.claimer,
      address: this.o.address,
      now: new Date(),
      deadUntil: new Date(Date.now() + this.o.leaseMs),
    }).catch(async (err: unknown) => {
      await client.end().catch(() => undefined);
      throw err;
    });
    if (!lock.taken) {
      await client.end().catch(() => undefined);
      if (lock.heldBy !== undefined) {
        throw new KiteqError(
          ErrorCode.ConfigInvalid,
          `node id ${this.o.nodeId} is in use by a running node (its run ${lock.heldBy} holds its liveness lock): give this node its own --bind or --node-id, or stop the other one first`,
          { nodeId: this.o.nodeId, key: "nodeId" },
        );
      }
      throw new Error(`liveness lock of claimer ${this.o.claimer} is held by another session`);
    }
    this.session = client;
    if (lock.wasDeclaredDead) {
      this.log.warn(
        { code: "KQ_TAKEOVER", claimer: this.o.claimer },
        "this node was declared dead while its liveness connection was down: what it held is left to the others, and it claims again",
      );
      this.o.onDeclaredDead?.();
    }
  }

  private async closeSession(): Promise<void> {
    const client = this.session;
    this.session = undefined;
    // Closing the connection frees both locks.
    await client?.end().catch(() => undefined);
  }

  /** Leadership tick: reconnect a lost session, then try the maintenance lock until held. */
  private async keepSession(): Promise<void> {
    if (this.stopped) return;
    if (this.session === undefined) {
      await this.openSession();
      this.log.info("liveness connection open again: liveness lock held");
    }
    if (this.leader || this.session === undefined) return;
    if (await tryMaintenanceLock(this.session)) {
      this.leader = true;
      this.log.info(
        "this node runs the cluster-wide maintenance now (expiry, retention, takeover of dead nodes)",
      );
      this.expiry.start(true);
      this.upkeep.start(true);
    }
  }

  private async stopLeaderJobs(): Promise<void> {
    await Promise.all([this.expiry.stop(), this.upkeep.stop()]);
  }

  private async sweepExpired(stopped: () => boolean): Promise<void> {
    while (!stopped() && this.leader) {
      const n = await expireDeliveries(this.o.pool, new Date(), this.o.nodeId, EXPIRY_BATCH);
      this.counters.expired += n;
      if (n < EXPIRY_BATCH) return;
    }
  }

  private async partitionUpkeep(): Promise<void> {
    await ensurePartitions(this.o.pool, new Date());
    if (this.leader) await forgetDeadClaimers(this.o.pool, new Date());
    if (this.o.retentionDays > 0 && this.leader) {
      const dropped = await dropPartitionsBefore(
        this.o.pool,
        new Date(Date.now() - this.o.retentionDays * 86_400_000),
      );
      this.counters.droppedPartitions += dropped.length;
      if (dropped.length > 0) this.log.info({ dropped }, "retention: dropped history partitions");
    }
  }

  /**
   * Declare dead every claimer whose lock vanished under the current server start (its deliveries
   * are then claimed at once by whichever node claims first) and release its check claims.
   */
  private async takeOverDeadClaimers(stopped: () => boolean): Promise<void> {
    const claimers = await claimerLiveness(this.o.pool);
    const now = Date.now();
    const present = new Set<string>();
    for (const c of claimers) {
      present.add(c.claimer);
      if (c.alive) {
        this.lastSeenAlive.set(c.claimer, now);
        this.firstSeenGone.delete(c.claimer);
        continue;
      }
      if (c.claimer === this.o.claimer || stopped()) continue;
      // Gone for a moment is not dead: a node whose liveness connection dropped takes its lock
      // again within a few hundred ms (a terminated backend, a network blip), and after a server
      // restart within a tick of the server's return (RESTART_GRACE_MS). A node that is not the
      // leader waits longer: the leader declares first, unless it hangs.
      const grace = !c.lockedThisEpoch ? RESTART_GRACE_MS : this.leader ? LEADER_GRACE_MS : FOLLOWER_GRACE_MS;
      const goneSince = this.firstSeenGone.get(c.claimer) ?? now;
      this.firstSeenGone.set(c.claimer, goneSince);
      if (now - goneSince < grace) continue;
      this.firstSeenGone.delete(c.claimer);
      const at = new Date();
      const released = await declareClaimerDead(
        this.o.pool,
        c.claimer,
        at,
        new Date(at.getTime() + this.o.leaseMs),
      );
      const lastSign = this.lastSeenAlive.get(c.claimer) ?? c.heartbeatAt?.getTime() ?? now;
      const seconds = Math.max(0, (Date.now() - lastSign) / 1000);
      this.lastSeenAlive.delete(c.claimer);
      this.counters.takeovers++;
      this.counters.takeoverChecks += released.checks;
      this.counters.takeoverSeconds.push(seconds);
      if (this.counters.takeoverSeconds.length > 1000) this.counters.takeoverSeconds.shift();
      this.log.info(
        {
          code: "KQ_TAKEOVER",
          claimer: c.claimer,
          checks: released.checks,
          sinceLastSignOfLifeSec: Number(seconds.toFixed(3)),
        },
        "a node is gone (its liveness lock vanished): its deliveries are claimed again now",
      );
    }
    for (const k of this.lastSeenAlive.keys()) if (!present.has(k)) this.lastSeenAlive.delete(k);
    for (const k of this.firstSeenGone.keys()) if (!present.has(k)) this.firstSeenGone.delete(k);
  }
}
