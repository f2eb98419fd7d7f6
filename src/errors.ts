/**
 * One error type for the whole broker: a stable code, the context it happened in (connection,
 * message id, ...) and the original error as `cause`.
 */

/** Stable error codes; operators grep logs for these, tests assert them. */
export const ErrorCode = {
  /** Framing lost or a packet larger than allowed / negative length. */
  FrameInvalid: "KQ_FRAME_INVALID",
  /** A known command whose protobuf body does not decode or misses a required field. */
  BodyInvalid: "KQ_BODY_INVALID",
  /** A command code this broker does not know. */
  UnknownCommand: "KQ_UNKNOWN_COMMAND",
  /** Anything other than CONN_META before a successful handshake. */
  NotAuthenticated: "KQ_NOT_AUTHENTICATED",
  /** Handshake refused (bad secret). */
  AuthRefused: "KQ_AUTH_REFUSED",
  /** A session acting for another group than the one it authenticated as (secrets configured). */
  Forbidden: "KQ_FORBIDDEN",
  /** Publish refused by KiteQ's validation rules. */
  MessageInvalid: "KQ_MESSAGE_INVALID",
  /** Publish refused because the receive rate limit is exhausted. */
  RateLimited: "KQ_RATE_LIMITED",
  /** The store failed (database error, connection lost). */
  StoreFailed: "KQ_STORE_FAILED",
  /** The broker is shutting down and takes no new work. */
  ShuttingDown: "KQ_SHUTTING_DOWN",
  /** Configuration value invalid. */
  ConfigInvalid: "KQ_CONFIG_INVALID",
  /** Registry (ZooKeeper) unreachable or refused an operation. */
  RegistryFailed: "KQ_REGISTRY_FAILED",
  /** A binding is malformed or conflicts with another. */
  BindingInvalid: "KQ_BINDING_INVALID",
  /** A request timed out waiting for its answer. */
  Timeout: "KQ_TIMEOUT",
  /** Connection closed while a request was outstanding. */
  ConnectionClosed: "KQ_CONNECTION_CLOSED",
  /** A connection did not complete its handshake within the deadline (closed). */
  HandshakeTimeout: "KQ_HANDSHAKE_TIMEOUT",
  /** A connection refused at once: too many on the node or from its remote address. */
  ConnectionLimit: "KQ_CONNECTION_LIMIT",
  /** A peer stopped reading and its unsent bytes passed the write buffer bound (closed). */
  SlowConsumer: "KQ_SLOW_CONSUMER",
  /** A producer committed a two-phase message the broker had already rolled back (given up): not delivered. */
  TxCommitTooLate: "KQ_TX_COMMIT_TOO_LATE",
  /** SDK: the broker refused a publish for good (its feedback is the message); retrying will not help. */
  SendRefused: "KQ_SEND_REFUSED",
  /** SDK: no broker serving the topic could be reached before the send or connect deadline. */
  NoBroker: "KQ_NO_BROKER",
  /** SDK: the producer or consumer was closed; the call was not (or no longer) attempted. */
  ClientClosed: "KQ_CLIENT_CLOSED",
  /** An admin API request with bad input (a filter, a cursor, a limit, a body): HTTP 400. */
  RequestInvalid: "KQ_REQUEST_INVALID",
  /** An admin API path, group or message that does not exist: HTTP 404. */
  NotFound: "KQ_NOT_FOUND",
  /** An admin API method not allowed on the path (HTTP 405), or a request too large (413). */
  RequestRefused: "KQ_REQUEST_REFUSED",
  /** An admin API action already running on this node (HTTP 409: one re-drive at a time). */
  Busy: "KQ_BUSY",
  /** Anything not classified above. */
  Internal: "KQ_INTERNAL",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Context attached to an error and to its log line. */
export interface ErrorContext {
  connection?: string;
  peer?: string;
  messageId?: string;
  topic?: string;
  groupId?: string;
  node?: string;
  key?: string;
  [key: string]: string | number | boolean | undefined;
}

/**
 * Every error of the broker and the SDK: `code` (an {@link ErrorCode}) is stable, `message` says
 * what and why, `context` names what it concerns (messageId, topic, broker, key of an option).
 */
export class KiteqError extends Error {
  override readonly name = "KiteqError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly context: ErrorContext = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** A short single line for logs and for feedback texts sent to clients. */
  describe(): string {
    return `${this.code}: ${this.message}`;
  }
}

/**
 * The one error path: turn anything thrown into a KiteqError with a stable code and context.
 * A KiteqError keeps its code and gains context; PostgreSQL errors (they carry a SQLSTATE in
 * `code`) become StoreFailed; the rest become `fallback`.
 */
export function toKiteqError(
  err: unknown,
  context: ErrorContext = {},
  fallback: ErrorCode = ErrorCode.Internal,
): KiteqError {
  if (err instanceof KiteqError) {
    return Object.keys(context).length === 0
      ? err
      : new KiteqError(err.code, err.message, { ...context, ...err.context }, { cause: err.cause ?? err });
  }
  const message = err instanceof Error ? err.message : String(err);
  const code = sqlState(err) !== undefined ? ErrorCode.StoreFailed : fallback;
  return new KiteqError(code, message, context, { cause: err });
}

/** The SQLSTATE of a PostgreSQL error, if `err` is one. Match on this, never on message text. */
export function sqlState(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * SQLSTATE classes caused by a statement's data rather than by the database's state: 22 data
 * exception (a NUL byte, an invalid timestamp, a bad encoding), 23 integrity constraint
 * violation, 54 program limit exceeded (an index row too large). Retrying the same rows in
 * smaller batches isolates the row at fault; a connection loss or a database that is down
 * (08, 57, 53, no SQLSTATE at all) would fail every retry.
 */
const DATA_ERROR_CLASSES: ReadonlySet<string> = new Set(["22", "23", "54"]);

/** Whether `err` is a PostgreSQL error caused by the data written (see DATA_ERROR_CLASSES). */
export function isDataError(err: unknown): boolean {
  const state = sqlState(err);
  return state !== undefined && DATA_ERROR_CLASSES.has(state.slice(0, 2));
}
