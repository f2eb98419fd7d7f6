/**
 * A periodic background job that never overlaps itself: a tick that comes while the previous run
 * is still in flight is skipped (counted), not queued, so a slow statement can never pile up
 * copies of itself and the connections they hold (issue 11).
 */

/** What a PeriodicJob reports about itself (metrics, tests). */
export interface PeriodicJobStats {
  runs: number;
  /** Ticks that found the previous run still in flight. */
  skipped: number;
  failures: number;
  /** Most runs in flight at once: 1 by construction (tests assert it). */
  maxConcurrent: number;
  lastDurationMs: number;
}

/** A job run every `intervalMs`, single-flight. */
export class PeriodicJob {
  readonly stats: PeriodicJobStats = {
    runs: 0,
    skipped: 0,
    failures: 0,
    maxConcurrent: 0,
    lastDurationMs: 0,
  };
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private concurrent = 0;
  private stopped = true;

  /**
   * @param name for logs
   * @param run the work; should loop over bounded batches and return when done or when
   *   `isStopped()` says so
   * @param onError called with what a run threw (the job keeps its schedule)
   */
  constructor(
    readonly name: string,
    private readonly intervalMs: number,
    private readonly run: (isStopped: () => boolean) => Promise<void>,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Start ticking; with `now`, also run at once. */
  start(now = false): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.timer = setInterval(() => this.trigger(), this.intervalMs);
    this.timer.unref();
    if (now) this.trigger();
  }

  /** Run now unless a run is in flight (then the tick is skipped). Returns the run in flight. */
  trigger(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running !== undefined) {
      this.stats.skipped++;
      return this.running;
    }
    const started = Date.now();
    this.concurrent++;
    this.stats.maxConcurrent = Math.max(this.stats.maxConcurrent, this.concurrent);
    const run = (async () => {
      try {
        await this.run(() => this.stopped);
        this.stats.runs++;
      } catch (err) {
        this.stats.failures++;
        if (!this.stopped) this.onError(err);
      } finally {
        this.concurrent--;
        this.stats.lastDurationMs = Date.now() - started;
        this.running = undefined;
      }
    })();
    this.running = run;
    return run;
  }

  /** Whether a run is in flight. */
  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Stop ticking; resolves when the run in flight (if any) has returned. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }
}
