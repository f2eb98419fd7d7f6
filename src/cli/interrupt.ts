/**
 * Ctrl-C (SIGINT) and SIGTERM in the one-shot commands. Without a handler Node.js dies at once:
 * a PostgreSQL the command had started for itself (the embedded store, no broker running) was
 * left running, and a redrive or replay stopped between two items with nothing said. Here:
 * - a command working item by item (listenForInterruption) is asked to stop before its next item
 *   or batch, and says how far it got (each item is its own transaction: what was done is whole);
 * - otherwise, or at a second signal, the cleanups registered (addCleanup: stop that PostgreSQL)
 *   run, bounded, and the process exits 130 (SIGINT) or 143 (SIGTERM), as a shell reports it.
 */

/** A request to stop, as a long command sees it. */
export interface Interruption {
  /** The signal received, once one was. */
  readonly signal: NodeJS.Signals | undefined;
  /** Stop listening (the command ended). */
  dispose(): void;
}

/** How long the cleanups may take after a signal before the process exits anyway. */
const CLEANUP_MS = 10_000;

const cleanups = new Set<() => Promise<void>>();
const softStops = new Set<(signal: NodeJS.Signals) => void>();
let installed = false;
let softStopped = false;
let exiting = false;

/** Exit code of a command stopped by `signal` (128 + its number, as a shell reports it). */
export function interruptedExitCode(signal: NodeJS.Signals): number {
  return signal === "SIGTERM" ? 143 : 130;
}

/**
 * True once a signal ends the process: the cleanups run and the process exits 130 or 143 by
 * itself; the command, failing meanwhile because its PostgreSQL is being stopped, must not print
 * that failure or exit with its own code.
 */
export function exitingOnSignal(): boolean {
  return exiting;
}

async function cleanUpAndExit(signal: NodeJS.Signals): Promise<void> {
  if (exiting) return;
  exiting = true;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled([...cleanups].map((fn) => fn())),
    new Promise((resolve) => {
      timer = setTimeout(resolve, CLEANUP_MS);
    }),
  ]);
  clearTimeout(timer);
  process.exit(interruptedExitCode(signal));
}

function onSignal(signal: NodeJS.Signals): void {
  if (!softStopped && softStops.size > 0) {
    softStopped = true;
    for (const stop of softStops) stop(signal);
    return;
  }
  void cleanUpAndExit(signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

/** Run `fn` if a signal ends the process (see module comment); returns its removal. */
export function addCleanup(fn: () => Promise<void>): () => void {
  install();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** Listen for a request to stop (the first SIGINT or SIGTERM) until dispose(). */
export function listenForInterruption(): Interruption {
  install();
  let received: NodeJS.Signals | undefined;
  const stop = (signal: NodeJS.Signals) => {
    received = signal;
  };
  softStops.add(stop);
  return {
    get signal() {
      return received;
    },
    dispose() {
      softStops.delete(stop);
    },
  };
}
