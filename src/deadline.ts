/**
 * A promise with a deadline: the one helper for "give up waiting after `ms`" (shard claims and
 * publish writes, the SDK's store ack, the forced shutdown). The promise itself goes on; its
 * outcome is the caller's.
 */
import { ErrorCode, KiteqError } from "./errors.js";

/** A promise that did not settle in time (code KQ_TIMEOUT). */
export class DeadlineExceeded extends KiteqError {
  constructor(message: string) {
    super(ErrorCode.Timeout, message);
  }
}

/**
 * `p`, or a rejection after `ms`: a DeadlineExceeded ("no <what> within <ms> ms"), or the error
 * `late()` returns (called once, when the deadline passes).
 */
export function withDeadline<T>(
  p: Promise<T>,
  ms: number,
  late: string | (() => Error) = "answer",
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(typeof late === "string" ? new DeadlineExceeded(`no ${late} within ${ms} ms`) : late()),
        ms,
      );
    }),
  ]);
}
