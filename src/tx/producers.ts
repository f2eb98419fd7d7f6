/**
 * This node's connections by groupId (a check for a message goes to a connection of its
 * publishing group), and the checks sent on each connection that are still unanswered (a
 * producer's answer carries the check's opaque).
 */
import type { Session } from "../server/session.js";

/** A check sent and not answered yet. */
export interface SentCheck {
  messageId: string;
  /** Check number (1 = first). */
  check: number;
  sentAtMs: number;
}

/** Connections per group and their unanswered checks (see module comment). */
export class ProducerSessions {
  private readonly byGroup = new Map<string, Session[]>();
  private readonly checks = new Map<Session, Map<number, SentCheck>>();
  private readonly turn = new Map<string, number>();

  /** Add a connection that finished its handshake; true when it is its group's first here. */
  add(session: Session): boolean {
    const groupId = session.groupId;
    if (groupId === undefined) return false;
    const list = this.byGroup.get(groupId) ?? [];
    list.push(session);
    this.byGroup.set(groupId, list);
    return list.length === 1;
  }

  /** Forget a closed connection and its unanswered checks. */
  remove(session: Session): void {
    this.checks.delete(session);
    const groupId = session.groupId;
    if (groupId === undefined) return;
    const list = (this.byGroup.get(groupId) ?? []).filter((s) => s !== session);
    if (list.length === 0) this.byGroup.delete(groupId);
    else this.byGroup.set(groupId, list);
  }

  /** Groups with at least one open connection here. */
  groups(): string[] {
    return [...this.byGroup.keys()];
  }

  /**
   * One open connection of `groupId` (round robin), or undefined: among those known to answer
   * checks (Session.answersTxChecks) when there are any, else among all.
   */
  pick(groupId: string): Session | undefined {
    const all = (this.byGroup.get(groupId) ?? []).filter((s) => !s.isClosed);
    const answering = all.filter((s) => s.answersTxChecks);
    const open = answering.length > 0 ? answering : all;
    if (open.length === 0) return undefined;
    const i = (this.turn.get(groupId) ?? 0) % open.length;
    this.turn.set(groupId, i + 1);
    return open[i];
  }

  /** Remember a check sent on `session` under `opaque`. */
  trackCheck(session: Session, opaque: number, check: SentCheck): void {
    let m = this.checks.get(session);
    if (m === undefined) {
      m = new Map();
      this.checks.set(session, m);
    }
    m.set(opaque, check);
  }

  /** The check a TX_ACK answers (same connection, opaque and message), forgotten once taken. */
  takeCheck(session: Session, opaque: number, messageId: string): SentCheck | undefined {
    const m = this.checks.get(session);
    const c = m?.get(opaque);
    if (c === undefined || c.messageId !== messageId) return undefined;
    m!.delete(opaque);
    return c;
  }

  /** Forget checks sent before `beforeMs` (a producer that never answers must not grow memory). */
  pruneChecks(beforeMs: number): void {
    for (const m of this.checks.values()) {
      for (const [opaque, c] of m) if (c.sentAtMs < beforeMs) m.delete(opaque);
    }
  }
}
