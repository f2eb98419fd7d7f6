/**
 * Two-phase commit (issue 5): TX_ACK from producers and the TxChecker. Placeholder wiring point:
 * the broker calls these hooks; the implementation lives in src/tx/.
 */

import type pg from "pg";
import type { BrokerConfig } from "../config/types.js";
import type { Dispatcher } from "../delivery/dispatcher.js";
import type { Logger } from "../log.js";
import type { TxACKPacket } from "../protocol/messages.js";
import type { Session } from "../server/session.js";

/** What the transaction module needs from the broker. */
export interface TransactionDeps {
  pool: pg.Pool;
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
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Create the transaction module. */
export function createTransactions(deps: TransactionDeps): Transactions {
  return {
    onTxAck: (session) => deps.log.debug({ connection: session.id }, "TX_ACK ignored (2PC not built yet)"),
    onSession: () => undefined,
    onSessionClosed: () => undefined,
    start: async () => undefined,
    stop: async () => undefined,
  };
}
