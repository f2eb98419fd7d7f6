/**
 * A promise with a deadline: the one helper for "give up waiting after `ms`" (shard claims, the
 * SDK's store ack, the forced shutdown). The promise itself goes on; its outcome is the caller's.
 */
import { ErrorCode, KiteqError } from "./errors.js";

/** A promise that did not settle in time (code KQ_TIMEOUT). */
export class DeadlineExceeded extends KiteqError {
  constructor(message: string) {
    super(ErrorCode.Timeout, message);
  }
}

/** `p`, or a DeadlineExceeded rejection ("no <what> within <ms> ms") after `ms`. */
export function withDeadline<T>(p: Promise<T>, ms: number, what = "answer"): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineExceeded(`no ${what} within ${ms} ms`)), ms);
    }),
  ]);
}
