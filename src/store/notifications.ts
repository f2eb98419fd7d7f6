/**
 * LISTEN/NOTIFY wake-ups (pg-listen): `kiteq_due` after a transaction created deliveries for
 * other nodes to claim, `kiteq_bindings` after the bindings changed. One NOTIFY per transaction,
 * never per message; a lost notification only delays work until the next poll.
 */
import type pg from "pg";
import type { Options, Subscriber } from "pg-listen";
import * as pgListen from "pg-listen";
import type { Logger } from "../log.js";

// pg-listen is CommonJS with `exports.default`: under Node's ESM loader the default import is the
// exports object.
type CreateSubscriber = (config: pg.ClientConfig, options: Options) => Subscriber;
const exported = pgListen.default as unknown as CreateSubscriber & { default?: CreateSubscriber };
const createSubscriber: CreateSubscriber = exported.default ?? exported;

/** Channel names. */
export const Channel = { Due: "kiteq_due", Bindings: "kiteq_bindings", Tx: "kiteq_tx" } as const;

/** Something that wakes the dispatcher up. */
export interface WakeSource {
  onDue(listener: () => void): void;
  onBindingsChanged(listener: () => void): void;
  /** Pending transactions became claimable (a dead node's check claims were released). */
  onTxDue(listener: () => void): void;
  close(): Promise<void>;
}

/** Subscribe to the broker's channels on a dedicated connection (reconnects on its own). */
export async function listenForWakeups(url: string, log: Logger): Promise<WakeSource> {
  const subscriber = createSubscriber(
    { connectionString: url },
    // Keep reconnecting for as long as it takes (the poll covers the gap); payloads are empty.
    {
      retryLimit: Number.POSITIVE_INFINITY,
      retryTimeout: Number.POSITIVE_INFINITY,
      retryInterval: 500,
      parse: (s: string) => s,
    },
  );
  const due: (() => void)[] = [];
  const bindings: (() => void)[] = [];
  const tx: (() => void)[] = [];
  subscriber.notifications.on(Channel.Due, () => {
    for (const l of due) l();
  });
  subscriber.notifications.on(Channel.Bindings, () => {
    for (const l of bindings) l();
  });
  subscriber.notifications.on(Channel.Tx, () => {
    for (const l of tx) l();
  });
  subscriber.events.on("error", (err: Error) =>
    log.error({ code: "KQ_STORE_FAILED", err: err.message }, "LISTEN connection failed"),
  );
  subscriber.events.on("reconnect", (attempt: number) =>
    log.warn({ attempt }, "LISTEN connection reconnecting"),
  );
  await subscriber.connect();
  await subscriber.listenTo(Channel.Due);
  await subscriber.listenTo(Channel.Bindings);
  await subscriber.listenTo(Channel.Tx);
  return {
    onDue: (l) => due.push(l),
    onBindingsChanged: (l) => bindings.push(l),
    onTxDue: (l) => tx.push(l),
    close: () => subscriber.close(),
  };
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
    close: async () => {
      await Promise.all(sources.map((s) => s.close()));
    },
  };
}
