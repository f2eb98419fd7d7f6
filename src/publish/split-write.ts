/**
 * A batch write that isolates bad items: when the batch fails on an error caused by its data
 * (isDataError: a SQLSTATE of class 22, 23 or 54), its halves are written again, recursively,
 * until only the items at fault fail; the others are stored as if nothing had happened. Any
 * other error (connection lost, database down) is not retried: on the first write it fails the
 * whole batch as before, and during a split it fails every item not yet written without another
 * statement. Cost: a batch of n items with k bad ones takes at most about 2k·log2(n) extra
 * statements (at most 2n - 1 in all).
 */

/** The outcome of one item of a split write. */
export type ItemOutcome<R> = { ok: true; result: R } | { ok: false; error: unknown };

/** Options of writeSplitting. */
export interface SplitWriteOptions<T> {
  /** Whether a failed write may be retried in halves (errors caused by the data). */
  splittable(err: unknown): boolean;
  /** Told when a batch is split (for logs and metrics). */
  onSplit?(items: readonly T[], err: unknown): void;
}

/**
 * Write `items` with `write` (one transaction, one result per item, throws on failure) and
 * split on data errors (see module comment). Rejects only when the first write fails with an
 * error that is not splittable; otherwise resolves with one outcome per item, in order.
 */
export async function writeSplitting<T, R>(
  items: T[],
  write: (items: T[]) => Promise<R[]>,
  options: SplitWriteOptions<T>,
): Promise<ItemOutcome<R>[]> {
  let results: R[];
  try {
    results = await write(items);
  } catch (err) {
    if (!options.splittable(err)) throw err;
    const state: SplitState = { fatal: undefined };
    return split(items, err, write, options, state);
  }
  return results.map((result) => ({ ok: true, result }));
}

interface SplitState {
  /** A non-splittable error seen during the split: the items not yet written fail with it. */
  fatal: { err: unknown } | undefined;
}

async function split<T, R>(
  items: T[],
  err: unknown,
  write: (items: T[]) => Promise<R[]>,
  options: SplitWriteOptions<T>,
  state: SplitState,
): Promise<ItemOutcome<R>[]> {
  if (items.length === 1) return [{ ok: false, error: err }];
  options.onSplit?.(items, err);
  const mid = Math.ceil(items.length / 2);
  const left = await attempt(items.slice(0, mid), write, options, state);
  const right = await attempt(items.slice(mid), write, options, state);
  return [...left, ...right];
}

async function attempt<T, R>(
  items: T[],
  write: (items: T[]) => Promise<R[]>,
  options: SplitWriteOptions<T>,
  state: SplitState,
): Promise<ItemOutcome<R>[]> {
  const failAll = (error: unknown): ItemOutcome<R>[] => items.map(() => ({ ok: false, error }));
  if (state.fatal !== undefined) return failAll(state.fatal.err);
  let results: R[];
  try {
    results = await write(items);
  } catch (err) {
    if (!options.splittable(err)) {
      state.fatal = { err };
      return failAll(err);
    }
    return split(items, err, write, options, state);
  }
  return results.map((result) => ({ ok: true, result }));
}
