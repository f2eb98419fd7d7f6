/**
 * Two-phase commit (issue 5): the broker's hooks. Producers' TX_ACKs are applied by
 * TxAnswerApplier (answers.ts), uncommitted messages are checked by TxChecker (checker.ts), and
 * both share this node's connections by group (producers.ts).
 */

import type pg from "pg";
import type { BrokerConfig } from "../config/types.js";
import type { Dispatcher } from "../delivery/dispatcher.js";
import type { Logger } from "../log.js";
import type { TxACKPacket } from "../protocol/messages.js";
import type { Session } from "../server/session.js";
import { releaseTxClaimsOf } from "../store/transactions.js";
import { TxAnswerApplier } from "./answers.js";
import { TxChecker } from "./checker.js";
import { ProducerSessions } from "./producers.js";

/** What the transaction module needs from the broker. */
export interface TransactionDeps {
  /** The pool the checker works on (one checker per shard, each with its shard's pool). */
  pool: pg.Pool;
  /**
   * Every shard's pool, shard 0 first (absent: `pool` only). A message's pending transaction is
   * in the shard of its messageId (`shardOf`).
   */
  pools?: readonly pg.Pool[];
  shardOf?: (messageId: string) => number;
  config: BrokerConfig;
  nodeId: string;
  /** Claimer id of this run (`${nodeId}/${start}`), for claims of pending transactions. */
  claimer: string;
  dispatcher: Dispatcher;
  log: Logger;
}

/** The broker's view of the transaction module. */
export interface Transactions {
  /** A producer's TX_ACK (its own, or its answer to a check). The broker never answers it. */
  onTxAck(session: Session, opaque: number, tx: TxACKPacket): void;
  /** A connection finished its handshake (a producer of its groupId may now be asked). */
  onSession(session: Session): void;
  onSessionClosed(session: Session): void;
  /** Another node is gone: release its claims on due checks so this node can make them now. */
  releaseClaimsOfNode(nodeId: string): Promise<number>;
  /** Check for due checks now (a dead node's check claims were released). */
  wake(): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Checks sent and give-ups (checker), producers' decisions (answers), since start. */
  counters(): TxCounters;
}

/** 2PC counters of one node (metrics). */
export interface TxCounters {
  checksSent: number;
  gaveUp: number;
  /** Rolled back at a check found past their expiry. */
  expired: number;
  committed: number;
  rolledBack: number;
}

/** Create the transaction module. */
export function createTransactions(deps: TransactionDeps): Transactions {
  // A producer that answered half its window of checks can take more: check again now.
  const producers = new ProducerSessions(() => wakeAll());
  const pools = deps.pools ?? [deps.pool];
  const answers = new TxAnswerApplier(deps, producers);
  // One checker per shard: each claims the due checks of its own shard's pending transactions.
  const checkers = pools.map(
    (pool, shard) =>
      new TxChecker(pools.length === 1 ? deps : { ...deps, pool, log: deps.log.child({ shard }) }, producers),
  );
  function wakeAll(): void {
    for (const c of checkers) c.wake();
  }
  return {
    onTxAck: (session, opaque, tx) => answers.onTxAck(session, opaque, tx),
    onSession: (session) => {
      // A group's first connection here: its due checks can now be made by this node.
      if (producers.add(session)) wakeAll();
    },
    onSessionClosed: (session) => producers.remove(session),
    releaseClaimsOfNode: async (nodeId) => {
      let n = 0;
      for (const pool of pools) n += await releaseTxClaimsOf(pool, `${nodeId}/`, deps.claimer);
      wakeAll();
      return n;
    },
    wake: wakeAll,
    counters: () => ({
      checksSent: checkers.reduce((n, c) => n + c.counters.checksSent, 0),
      gaveUp: checkers.reduce((n, c) => n + c.counters.gaveUp, 0),
      expired: checkers.reduce((n, c) => n + c.counters.expired, 0),
      committed: answers.counters.committed,
      rolledBack: answers.counters.rolledBack,
    }),
    start: async () => {
      for (const c of checkers) await c.start();
    },
    stop: async () => {
      await Promise.all(checkers.map((c) => c.stop()));
      await answers.drain();
    },
  };
}
