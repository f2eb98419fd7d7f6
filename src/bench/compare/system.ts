/**
 * What the compare suite needs from each system under test (one table row), and the message
 * payload the peers carry (kiteq-pg carries the same fields in its body, see kiteq-load.ts).
 */

/** A handler call: which message (sequence number), its send time and when the handler saw it. */
export type SeenCallback = (seq: number, sentAt: number, seenAt: number) => void;

/** A process whose peak RSS (VmHWM) counts towards a row's footprint. */
export interface MeasuredProcess {
  /** "broker", "consumer". */
  role: string;
  pid: number;
}

/** One row of the comparison: a system in one configuration. */
export interface SystemUnderTest {
  /** Row name, e.g. "kiteq-pg-uncapped", "pg-boss (NOTIFY)". */
  readonly name: string;
  /** The release run, read from the installed package.json ("pg-boss 12.38.0"). */
  readonly version: string;
  /** Every cap or limit this row runs under, in one line (tables and the SVG legend). */
  readonly caps: string;
  /** What its database keeps after a message was handled (labels the database size). */
  readonly retention: string;
  /** How burn-down fills its backlog (the system's batch API, or pipelined single enqueues). */
  readonly fillMethod: string;
  /** What the RSS figure covers. */
  readonly rssOf: string;
  /** Database it runs on (measured with pg_database_size). */
  readonly database: string;
  /** The settings it runs with, as printed and written to the JSON. */
  readonly settings: Record<string, string | number | boolean>;
  /** Fresh database, schema, server side, producers and a consumer process not yet consuming. */
  setup(): Promise<void>;
  /**
   * Enqueue one message through the system's client as producer `producer` (kiteq-pg: that
   * producer's connection; peers: their pooled client); resolves once it is durably stored.
   */
  enqueue(producer: number, seq: number, sentAt: number): Promise<void>;
  /**
   * Enqueue messages `seqs` in one call of the system's batch API; absent when it has none (then
   * burn-down fills with pipelined single enqueues).
   */
  enqueueBatch?(seqs: readonly number[], sentAt: number): Promise<void>;
  /** Start consuming (no-op handler); every handler call is reported through `onSeen`. */
  startConsumer(onSeen: SeenCallback): Promise<void>;
  /** Stop consuming, its process kept warm; startConsumer resumes (the warm-up before burn-down). */
  pauseConsumer(): Promise<void>;
  /** Stop consuming; resolves after every handler call was reported. */
  stopConsumer(): Promise<void>;
  /** The processes (beside PostgreSQL and the producing bench process) whose RSS is reported. */
  measuredProcesses(): MeasuredProcess[];
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
  /** Producers of the awaited flat-out phase (each awaiting one enqueue). */
  producers: number;
  /**
   * kiteq-pg: SDK connections the producers share (1: one client, as an application's producers
   * share its KiteQ client; a value >= producers gives each producer a connection of its own).
   */
  kiteqConnections: number;
  /** Producer pool size of the peers (their client's pg pool): one connection per enqueue in flight. */
  peerProducerPool: number;
  bodySize: number;
}
