/**
 * LISTEN/NOTIFY wake-ups: `kiteq_due` after a transaction created deliveries for other nodes to
 * claim, `kiteq_bindings` after the bindings changed. One NOTIFY per transaction, never per
 * message; a lost notification only delays work until the next poll.
 *
 * The LISTEN connection is a dedicated client (store/failover.ts: with a multi-host URL it goes to
 * the current primary). When it is lost it is opened again every RETRY_MS for as long as it
 * takes; once open again, every listener is called once, since notifications sent meanwhile were
 * missed. A periodic check finds a connection that died without a word (a half-open socket).
 */
import type pg from "pg";
import { ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import { createClient } from "./failover.js";

/** Channel names. */
export const Channel = {
  Due: "kiteq_due",
  Bindings: "kiteq_bindings",
  Tx: "kiteq_tx",
  /** kiteq_publish (SQL) stored a message that waits for a Regx match (regx_routing). */
  Route: "kiteq_route",
} as const;

type ChannelName = (typeof Channel)[keyof typeof Channel];

/** Something that wakes the dispatcher up. */
export interface WakeSource {
  onDue(listener: () => void): void;
  onBindingsChanged(listener: () => void): void;
  /** Pending transactions became claimable (a dead node's check claims were released). */
  onTxDue(listener: () => void): void;
  /** A message published in SQL waits for a broker's Regx match (store/regx-routing.ts). */
  onRoute(listener: () => void): void;
  close(): Promise<void>;
}

/** Pause between attempts to open a lost LISTEN connection. */
const RETRY_MS = 500;
/** Period of the liveness check of the LISTEN connection, and how long it may take. */
const CHECK_MS = 30_000;
const CHECK_TIMEOUT_MS = 10_000;

/** Subscribe to the broker's channels on a dedicated connection (reconnects on its own). */
export async function listenForWakeups(url: string, log: Logger): Promise<WakeSource> {
  const listeners = new Map<ChannelName, (() => void)[]>(Object.values(Channel).map((c) => [c, []]));
  const fire = (channel: string) => {
    for (const l of listeners.get(channel as ChannelName) ?? []) l();
  };
  const subscription = new Subscription(url, log, fire, () => {
    for (const channel of listeners.keys()) fire(channel);
  });
  await subscription.open();
  subscription.startChecks();
  const on = (channel: ChannelName) => (l: () => void) => listeners.get(channel)?.push(l);
  return {
    onDue: on(Channel.Due),
    onBindingsChanged: on(Channel.Bindings),
    onTxDue: on(Channel.Tx),
    onRoute: on(Channel.Route),
    close: () => subscription.close(),
  };
}

/** The LISTEN connection, opened again whenever it is lost (see module comment). */
class Subscription {
  private client: pg.Client | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  private check: NodeJS.Timeout | undefined;
  private failedAttempts = 0;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    private readonly onNotification: (channel: string) => void,
    private readonly onReopened: () => void,
  ) {}

  /** Connect and LISTEN to every channel; throws when that fails. */
  async open(): Promise<void> {
    const client = createClient(
      this.url,
      { application_name: "kiteq-pg listen", keepAlive: true, connectionTimeoutMillis: 10_000 },
      this.log,
    );
    client.on("notification", (n: pg.Notification) => this.onNotification(n.channel));
    const lost = (err?: Error) => this.lost(client, err);
    client.on("error", lost);
    client.on("end", () => lost());
    try {
      await client.connect();
      for (const channel of Object.values(Channel)) await client.query(`LISTEN ${channel}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
  }

  startChecks(): void {
    this.check = setInterval(() => void this.checkConnection(), CHECK_MS);
    this.check.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.check);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private lost(client: pg.Client, err?: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    void client.end().catch(() => undefined);
    if (this.closed) return;
    this.log.warn(
      { code: ErrorCode.StoreFailed, err: err?.message },
      "LISTEN connection lost: reconnecting (the poll covers the gap)",
    );
    this.scheduleReopen();
  }

  private scheduleReopen(): void {
    if (this.closed || this.retry !== undefined) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.reopen();
    }, RETRY_MS);
  }

  private async reopen(): Promise<void> {
    if (this.closed) return;
    try {
      await this.open();
    } catch (err) {
      this.failedAttempts++;
      // While the database is down: the first attempts, then one line every ~10 s.
      if (this.failedAttempts <= 3 || this.failedAttempts % 20 === 0) {
        this.log.warn(
          { code: ErrorCode.StoreFailed, err: (err as Error).message, attempts: this.failedAttempts },
          "LISTEN connection reconnecting",
        );
      }
      this.scheduleReopen();
      return;
    }
    if (this.closed) return;
    this.log.info({ attempts: this.failedAttempts + 1 }, "LISTEN connection open again");
    this.failedAttempts = 0;
    // Notifications sent while it was down were missed: wake everything once.
    this.onReopened();
  }

  /** A connection that does not answer a trivial statement in time is given up and reopened. */
  private async checkConnection(): Promise<void> {
    const client = this.client;
    if (client === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<Error>((resolve) => {
      timer = setTimeout(
        () => resolve(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)),
        CHECK_TIMEOUT_MS,
      );
    });
    const outcome = await Promise.race([
      client.query("SELECT 1").then(
        () => undefined,
        (err: Error) => err,
      ),
      timedOut,
    ]);
    clearTimeout(timer);
    if (outcome !== undefined) this.lost(client, outcome);
  }
}

/**
 * One LISTEN connection per shard (a shard's NOTIFY reaches only its own listeners), fanned in:
 * a wake-up from any shard wakes the listener (the claim loop then asks every shard in turn).
 */
export async function listenForWakeupsOnShards(urls: readonly string[], log: Logger): Promise<WakeSource> {
  if (urls.length === 1) return listenForWakeups(urls[0]!, log);
  const sources = await Promise.all(urls.map((url, shard) => listenForWakeups(url, log.child({ shard }))));
  return {
    onDue: (l) => {
      for (const s of sources) s.onDue(l);
    },
    onBindingsChanged: (l) => {
      // Bindings live in shard 0: only its NOTIFY says they changed.
      sources[0]!.onBindingsChanged(l);
    },
    onTxDue: (l) => {
      for (const s of sources) s.onTxDue(l);
    },
    onRoute: (l) => {
      for (const s of sources) s.onRoute(l);
    },
    close: async () => {
      await Promise.all(sources.map((s) => s.close()));
    },
  };
}
