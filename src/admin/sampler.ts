/**
 * The admin server's view of the cluster over time: every few seconds (never more often, however
 * many scrapes and console pages ask) one sample of each group's backlog from the store (two
 * index-path statements) and of this node's counters, kept in a ring covering the last hour.
 * Rates are differences between samples; /metrics, /api and the console all read the ring.
 */
import type pg from "pg";
import type { GroupDeliveryCounters } from "../delivery/group-counters.js";
import { ErrorCode, toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import { listBindings } from "../store/bindings.js";
import { listNodes } from "../store/groups.js";
import {
  shardedCountDeadLetters,
  shardedCountPending,
  shardedGroupBacklogs,
} from "../store/sharded-history.js";
import { heldByGroup } from "./cluster.js";

/** One group in one sample. */
export interface GroupSample {
  owed: number;
  /** Seconds since the earliest due time of its owed deliveries (0 when none is due yet). */
  oldestOwedAgeSeconds: number;
  /** Owed rows held by a node under a live lease (all nodes). */
  inFlight: number;
  /** This node's cumulative counters for the group. */
  pushed: number;
  redelivered: number;
  acked: number;
  nacked: number;
  deadLettered: number;
  /** Messages still dead for the group (capped at DEAD_LETTER_COUNT_CAP; refreshed every 15 s). */
  deadLetters: number;
}

/**
 * Node liveness as the nodes table says (a node heartbeats every 5 s, HEARTBEAT_INTERVAL_MS):
 * stopped cleanly, dead (its run was declared dead: the process is gone, its work taken over),
 * unresponsive (no heartbeat for 15 s, three missed: not declared dead, hung or cut off from the database),
 * or alive.
 */
export type Liveness = "alive" | "unresponsive" | "dead" | "stopped";

/** A heartbeat older than this marks a node unresponsive. */
export const HEARTBEAT_STALE_MS = 15_000;

/** A node's liveness at `now` (epoch ms). */
export function livenessOf(
  n: { heartbeatAt: Date; stoppedAt: Date | null; declaredDead: boolean },
  now: number,
): Liveness {
  if (n.stoppedAt !== null) return "stopped";
  if (n.declaredDead) return "dead";
  return now - n.heartbeatAt.getTime() > HEARTBEAT_STALE_MS ? "unresponsive" : "alive";
}

/** One sample. */
export interface Sample {
  /** Epoch ms. */
  at: number;
  /** This node's cumulative publishes stored (accepted) and pushes. */
  published: number;
  pushed: number;
  groups: Map<string, GroupSample>;
  /** 2PC messages waiting for their commit (capped). */
  pendingTransactions: number;
  /** Nodes per liveness. */
  nodes: Record<Liveness, number>;
}

/** What the sampler reads from the node. */
export interface SamplerSource {
  published(): number;
  pushed(): number;
  groupCounters(): ReadonlyMap<string, Readonly<GroupDeliveryCounters>>;
}

/** Options of Sampler. */
export interface SamplerOptions {
  /** Shard 0: bindings and nodes. */
  pool: pg.Pool;
  /** Every shard's pool when the store is sharded (backlogs and counts summed over them). */
  pools?: readonly pg.Pool[];
  source: SamplerSource;
  log: Logger;
  /** Minimum time between two samples (ms); default 5000. */
  intervalMs?: number;
  /** Minimum time between two dead-letter counts (ms); default 15,000. */
  deadLetterIntervalMs?: number;
  /** How long samples are kept (ms); default one hour. */
  keepMs?: number;
  /** The shards known down now (a sharded store): a failed sample names them. */
  shardsDown?: () => readonly { shard: number; label: string; reason: string }[];
}

/** Per-second rates between two samples. */
export interface Rates {
  publishPerSecond: number;
  pushPerSecond: number;
}

/** Per-second rates of one group. */
export interface GroupRates {
  delivered: number;
  acked: number;
  nacked: number;
  deadLettered: number;
  redelivered: number;
}

const ZERO: GroupDeliveryCounters = { pushed: 0, redelivered: 0, acked: 0, nacked: 0, deadLettered: 0 };

/** Samples the backlog and counters at most once per interval; see the module comment. */
export class Sampler {
  private readonly ring: Sample[] = [];
  private pending: Promise<Sample> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;
  private readonly keepMs: number;
  private deadLetters = new Map<string, number>();
  /** Failing since the last success: logged once when it starts and once when it ends. */
  private failing = false;
  private deadLettersAt = Number.NEGATIVE_INFINITY;
  private readonly deadLettersMs: number;

  constructor(private readonly o: SamplerOptions) {
    this.intervalMs = o.intervalMs ?? 5000;
    this.keepMs = o.keepMs ?? 3_600_000;
    // 15 s (it was a minute: a re-drive's effect showed that late): the count reads at most
    // DEAD_LETTER_COUNT_CAP index entries of each group (dead_letters_group_idx).
    this.deadLettersMs = o.deadLetterIntervalMs ?? 15_000;
  }

  /** Count the dead letters again at the next sample (a re-drive changed them). */
  recountDeadLetters(): void {
    this.deadLettersAt = Number.NEGATIVE_INFINITY;
  }

  /** Sample every interval in the background (for the charts) until stop(). */
  start(): void {
    this.timer ??= setInterval(() => {
      this.refresh().catch(() => undefined);
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * The newest sample. The background timer refreshes it every interval, so a reader (a scrape)
   * normally gets it from memory; it waits for a new one only when the newest is older than
   * three intervals (or there is none yet).
   */
  latest(): Promise<Sample> {
    const last = this.ring[this.ring.length - 1];
    if (last !== undefined && Date.now() - last.at < 3 * this.intervalMs) return Promise.resolve(last);
    return this.refresh();
  }

  /** Take a sample, unless one is being taken (then wait for that one). */
  private refresh(): Promise<Sample> {
    const last = this.ring[this.ring.length - 1];
    if (last !== undefined && this.pending === undefined && Date.now() - last.at < this.intervalMs / 2) {
      return Promise.resolve(last);
    }
    this.pending ??= this.take().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /** Every sample kept, oldest first. */
  history(): readonly Sample[] {
    return this.ring;
  }

  /** Rates over the last `windowMs` (default 60 s) of samples ending at `last`. */
  rates(last: Sample, windowMs = 60_000): { node: Rates; groups: Map<string, GroupRates> } {
    const first = this.ring.find((s) => s.at >= last.at - windowMs && s.at < last.at) ?? last;
    const secs = (last.at - first.at) / 1000;
    const per = (a: number, b: number) => (secs > 0 ? Math.max(0, a - b) / secs : 0);
    const groups = new Map<string, GroupRates>();
    for (const [id, g] of last.groups) {
      const f = first.groups.get(id) ?? { ...ZERO };
      groups.set(id, {
        delivered: per(g.pushed, f.pushed),
        acked: per(g.acked, f.acked),
        nacked: per(g.nacked, f.nacked),
        deadLettered: per(g.deadLettered, f.deadLettered),
        redelivered: per(g.redelivered, f.redelivered),
      });
    }
    return {
      node: {
        publishPerSecond: per(last.published, first.published),
        pushPerSecond: per(last.pushed, first.pushed),
      },
      groups,
    };
  }

  private async take(): Promise<Sample> {
    const now = Date.now();
    try {
      const bindings = await listBindings(this.o.pool);
      const counters = this.o.source.groupCounters();
      const named = new Set([...bindings.map((b) => b.groupId), ...counters.keys()]);
      const [backlog, pendingTransactions, nodes] = await Promise.all([
        shardedGroupBacklogs(this.o.pools ?? [this.o.pool], [...named]),
        shardedCountPending(this.o.pools ?? [this.o.pool]),
        listNodes(this.o.pool),
      ]);
      if (now - this.deadLettersAt >= this.deadLettersMs) {
        this.deadLetters = await shardedCountDeadLetters(this.o.pools ?? [this.o.pool], [
          ...new Set([...named, ...backlog.map((b) => b.groupId)]),
        ]);
        this.deadLettersAt = now;
      }
      const liveness: Record<Liveness, number> = { alive: 0, unresponsive: 0, dead: 0, stopped: 0 };
      for (const n of nodes) liveness[livenessOf(n, now)]++;
      const held = heldByGroup(nodes, now);
      const groups = new Map<string, GroupSample>();
      for (const b of backlog) {
        const c = counters.get(b.groupId) ?? ZERO;
        groups.set(b.groupId, {
          owed: b.owed,
          oldestOwedAgeSeconds: b.oldestDue === null ? 0 : Math.max(0, (now - b.oldestDue.getTime()) / 1000),
          inFlight: held.get(b.groupId) ?? 0,
          pushed: c.pushed,
          redelivered: c.redelivered,
          acked: c.acked,
          nacked: c.nacked,
          deadLettered: c.deadLettered,
          deadLetters: this.deadLetters.get(b.groupId) ?? 0,
        });
      }
      const sample: Sample = {
        at: now,
        published: this.o.source.published(),
        pushed: this.o.source.pushed(),
        groups,
        pendingTransactions,
        nodes: liveness,
      };
      this.ring.push(sample);
      if (this.failing) this.o.log.info("sampling the group backlog works again");
      this.failing = false;
      while (this.ring.length > 0 && this.ring[0]!.at < now - this.keepMs) this.ring.shift();
      return sample;
    } catch (err) {
      // Only the store is read here: a refused connection is the store's failure, not ours.
      const e = toKiteqError(err, {}, ErrorCode.StoreFailed);
      if (!this.failing) {
        // A sample sums every shard: one shard down fails it, and the line says which.
        const down = this.o.shardsDown?.() ?? [];
        if (down.length > 0) {
          this.o.log.warn(
            { code: e.code, err: e.message, shardsDown: down.map((d) => d.shard).join(",") },
            `sampling the group backlog failed: ${down.map((d) => `shard ${d.shard} (${d.label}) is down: ${d.reason}`).join("; ")}`,
          );
        } else this.o.log.warn({ code: e.code, err: e.message }, "sampling the group backlog failed");
      }
      this.failing = true;
      throw e;
    }
  }
}
