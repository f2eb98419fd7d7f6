/**
 * What the compare suite needs from each system under test, and the message payload the peers
 * carry (kiteq-pg carries the same fields in its body, see kiteq-load.ts).
 */

/** A handler call: which message (sequence number), its send time and when the handler saw it. */
export type SeenCallback = (seq: number, sentAt: number, seenAt: number) => void;

/** One system under test (kiteq-pg, pg-boss, graphile-worker). */
export interface SystemUnderTest {
  readonly name: string;
  /** Database it runs on (measured with pg_database_size). */
  readonly database: string;
  /** The settings it runs with, as printed and written to the JSON. */
  readonly settings: Record<string, string | number | boolean>;
  /** What the peak RSS figure is the peak of. */
  readonly rssOf: string;
  /** Fresh database, schema, server side and producers; no consumer yet. */
  setup(): Promise<void>;
  /** Enqueue one message through the system's client; resolves once it is durably stored. */
  enqueue(seq: number, sentAt: number): Promise<void>;
  /** Start the consumer (no-op handler); every handler call is reported through `onSeen`. */
  startConsumer(onSeen: SeenCallback): Promise<void>;
  /** pid of the process whose VmHWM is reported. */
  rssPid(): number;
  /** Stop everything it started (idempotent). */
  teardown(): Promise<void>;
}

/** Job payload of the peers: sequence number, send time (ms, nowMs clock), padding to the body size. */
export interface PeerPayload {
  s: number;
  t: number;
  p: string;
}

/** A peer payload whose JSON is about `bodySize` bytes. */
export function peerPayload(seq: number, sentAt: number, bodySize: number): PeerPayload {
  return { s: seq, t: sentAt, p: "x".repeat(Math.max(0, bodySize - 40)) };
}

/** Settings shared by the systems' constructors. */
export interface SystemOptions {
  /** Producer connections of kiteq-pg. */
  producerConnections: number;
  /** Producer pool size of the peers (their client's pg pool). */
  peerProducerPool: number;
  bodySize: number;
}
