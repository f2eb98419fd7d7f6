/**
 * How many pushes one consumer connection may have unanswered, from how fast it answers: as many
 * as it answers in half the delivery timeout (at least a floor). A push waits on the consumer's
 * side at most about that long, so a slow consumer is not sent work it cannot start before the
 * timeout: with the group's whole window (2,000) in flight, an SDK consumer running 4 handlers of
 * 50 ms answered 21% of a backlog false unrun (each past its maxWaitMs), and those attempts
 * dead-lettered messages no handler ever ran. A fast consumer's bound grows with its rate within
 * a second. Pure: time is a parameter.
 */

/** Unanswered pushes a connection may always have. */
export const MIN_UNANSWERED = 64;

/** Answers per second of one connection over the last whole second and the current one. */
export class AnswerPace {
  private second = 0;
  private current = 0;
  private previous = 0;

  /** One answer (true or false) came at `nowMs`. */
  answered(nowMs: number): void {
    this.roll(nowMs);
    this.current++;
  }

  /** Unanswered pushes allowed at `nowMs`: its answers in `horizonMs` at its recent rate. */
  limit(nowMs: number, horizonMs: number): number {
    this.roll(nowMs);
    const rate = Math.max(this.previous, this.current);
    return Math.max(MIN_UNANSWERED, Math.floor((rate * horizonMs) / 1000));
  }

  private roll(nowMs: number): void {
    const s = Math.floor(nowMs / 1000);
    if (s === this.second) return;
    this.previous = s === this.second + 1 ? this.current : 0;
    this.current = 0;
    this.second = s;
  }
}
