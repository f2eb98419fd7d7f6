/**
 * This node's connections by groupId (a check for a message goes to a connection of its
 * publishing group), and the checks sent on each connection that are still unanswered (a
 * producer's answer carries the check's opaque).
 *
 * Checks in flight are bounded per connection (MAX_CHECKS_IN_FLIGHT), as pushes are per consumer:
 * without a bound, 200,000 due checks went to a producer answering 1,000 a second in one burst,
 * and each was sent again at its next check time while still queued there (465,000 checks in
 * 90 s, the broker's RSS 230 -> 430 MB, its event loop stalled up to 0.3 s).
 */
import type { Session } from "../server/session.js";

/** Unanswered checks a connection may have at once; more wait until it answers (or they age out). */
export const MAX_CHECKS_IN_FLIGHT = 1000;
/** A connection whose checks in flight fall to this many can take a batch again: the checker is woken. */
const ROOM_AGAIN_AT = MAX_CHECKS_IN_FLIGHT / 2;

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

  /** `onRoom` runs when a connection that was at least half full answers down to half. */
  constructor(private readonly onRoom: () => void = () => undefined) {}

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
   * One open connection of `groupId` with room for a check (round robin), or undefined: among
   * those known to answer checks (Session.answersTxChecks) when there are any, else among all.
   */
  pick(groupId: string): Session | undefined {
    const open = this.candidates(groupId).filter((s) => this.inFlight(s) < MAX_CHECKS_IN_FLIGHT);
    if (open.length === 0) return undefined;
    const i = (this.turn.get(groupId) ?? 0) % open.length;
    this.turn.set(groupId, i + 1);
    return open[i];
  }

  /** How many more checks the connections of `groupId` here can take now (what pick may return). */
  room(groupId: string): number {
    let n = 0;
    for (const s of this.candidates(groupId)) n += Math.max(0, MAX_CHECKS_IN_FLIGHT - this.inFlight(s));
    return n;
  }

  /** Unanswered checks sent on `session` (not yet aged out by pruneChecks). */
  inFlight(session: Session): number {
    return this.checks.get(session)?.size ?? 0;
  }

  /** The open connections checks of `groupId` go to: those that answer checks, if any. */
  private candidates(groupId: string): Session[] {
    const all = (this.byGroup.get(groupId) ?? []).filter((s) => !s.isClosed);
    const answering = all.filter((s) => s.answersTxChecks);
    return answering.length > 0 ? answering : all;
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
    if (m!.size === ROOM_AGAIN_AT) this.onRoom();
    return c;
  }

  /**
   * Forget checks sent before `beforeMs`: a producer that never answers must not grow memory, nor
   * keep its connection's room taken for ever.
   */
  pruneChecks(beforeMs: number): void {
    for (const m of this.checks.values()) {
      for (const [opaque, c] of m) if (c.sentAtMs < beforeMs) m.delete(opaque);
    }
  }
}
