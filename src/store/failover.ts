/**
 * Connections that follow the primary. A target naming several hosts (hosts.ts) gets one
 * HostSelector per process: it tries the hosts in order, libpq-style, with a short probe
 * connection each (STATE_QUERY), and remembers the host it chose. Every new connection of a pool
 * or a dedicated client (LISTEN, liveness lock) goes to that host and checks the server again on
 * arrival. The choice is forgotten, so the next connection selects again, when a connection to
 * the chosen host is refused or lost, finds the server not (or no longer) the kind wanted, or a
 * statement is refused with 25006 (read-only transaction: a standby, or a demoted primary).
 * After a failover, connections therefore reach the promoted standby as soon as it takes writes.
 */
import pg from "pg";
import { ErrorCode, KiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import {
  type ConnectionTarget,
  ConnectionTargetError,
  describeState,
  type HostAddress,
  hostLabel,
  NOT_WRITABLE_SQLSTATE,
  parseConnectionTarget,
  qualifies,
  type ServerState,
  selectHost,
  wantsWritable,
} from "./hosts.js";

/** What a probe, and every new connection of a multi-host target, reads of the server. */
const STATE_QUERY =
  "SELECT pg_is_in_recovery() AS in_recovery, current_setting('transaction_read_only') = 'on' AS read_only";

/** How long a probe waits for one host (connect and STATE_QUERY) before trying the next. */
const PROBE_TIMEOUT_MS = 5000;

/**
 * After a selection found no server, connections fail at once with its error for this long, so a
 * burst of publishes does not open a probe connection each against a standby; it bounds how late
 * a promotion is noticed.
 */
const FAILED_SELECTION_REUSE_MS = 200;

/** The target of `url`, or a KiteqError (KQ_CONFIG_INVALID) saying why it cannot be used. */
export function connectionTarget(url: string): ConnectionTarget {
  try {
    return parseConnectionTarget(url);
  } catch (err) {
    if (!(err instanceof ConnectionTargetError)) throw err;
    throw new KiteqError(ErrorCode.ConfigInvalid, `invalid database URL: ${err.message}`, {}, { cause: err });
  }
}

async function readState(client: pg.Client): Promise<ServerState> {
  const { rows } = await client.query<{ in_recovery: boolean; read_only: boolean }>(STATE_QUERY);
  const row = rows[0];
  return { inRecovery: row?.in_recovery === true, readOnly: row?.read_only === true };
}

/** The host choice of one multi-host target, shared by every connection to it in the process. */
export class HostSelector {
  private current: number | undefined;
  /** The last host chosen (kept across invalidation, to log changes only). */
  private last: number | undefined;
  private selecting: Promise<number> | undefined;
  private failed: { error: KiteqError; atMs: number } | undefined;
  /** Where selections and changes of host are logged (the first logger given). */
  log: Logger | undefined;

  constructor(readonly target: ConnectionTarget) {}

  /** The index of the host new connections go to: the chosen one, or a new selection. */
  pick(): Promise<number> {
    if (this.current !== undefined) return Promise.resolve(this.current);
    const failed = this.failed;
    if (failed !== undefined && Date.now() - failed.atMs < FAILED_SELECTION_REUSE_MS) {
      return Promise.reject(failed.error);
    }
    this.selecting ??= this.select().finally(() => {
      this.selecting = undefined;
    });
    return this.selecting;
  }

  /** A connection to host `index` failed or found the wrong kind of server: select again. */
  invalidate(index: number, why: string): void {
    if (this.current !== index) return;
    this.current = undefined;
    this.log?.warn(
      { code: ErrorCode.StoreFailed, host: hostLabel(this.host(index)), why },
      "database host lost or no longer suitable: choosing among the hosts again at the next connection",
    );
  }

  host(index: number): HostAddress {
    return this.target.hosts[index] as HostAddress;
  }

  private async select(): Promise<number> {
    try {
      const { index, state } = await selectHost(this.target, (_host, i) => this.probe(i));
      this.current = index;
      this.failed = undefined;
      if (this.last !== index) {
        this.log?.info(
          {
            host: hostLabel(this.host(index)),
            targetSessionAttrs: this.target.targetSessionAttrs,
            server: describeState(state),
          },
          this.last === undefined ? "database host chosen" : "database host changed (failover)",
        );
      }
      this.last = index;
      return index;
    } catch (err) {
      const error = new KiteqError(ErrorCode.StoreFailed, (err as Error).message, {}, { cause: err });
      this.failed = { error, atMs: Date.now() };
      throw error;
    }
  }

  private async probe(index: number): Promise<ServerState> {
    const client = new pg.Client({
      connectionString: this.target.hostUrls[index],
      connectionTimeoutMillis: PROBE_TIMEOUT_MS,
      query_timeout: PROBE_TIMEOUT_MS,
      application_name: "kiteq-pg host check",
    });
    client.on("error", () => undefined);
    try {
      await client.connect();
      return await readState(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

const selectors = new Map<string, HostSelector>();

/** The process's selector of `url` (one per connection string). */
export function hostSelector(url: string, target: ConnectionTarget = connectionTarget(url)): HostSelector {
  let s = selectors.get(url);
  if (s === undefined) {
    s = new HostSelector(target);
    selectors.set(url, s);
  }
  return s;
}

/**
 * pg.Client whose connection errors never go unheard: a connection lost while a pool client is
 * checked out fails its queries (and the pool drops it at release) instead of throwing from the
 * socket's event handler and ending the process.
 */
export class BrokerClient extends pg.Client {
  constructor(config?: pg.ClientConfig) {
    super(config);
    this.on("error", () => undefined);
  }
}

/** A pg.Client class whose connections go to `selector`'s chosen host (see module comment). */
export function failoverClientClass(selector: HostSelector): typeof BrokerClient {
  const target = selector.target;
  const writable = wantsWritable(target.targetSessionAttrs);
  return class FailoverClient extends BrokerClient {
    private hostIndex: number | undefined;
    private closing = false;

    constructor(config?: pg.ClientConfig) {
      super({ ...config, connectionString: target.hostUrls[0] });
      this.on("end", () => {
        if (!this.closing && this.hostIndex !== undefined)
          selector.invalidate(this.hostIndex, "connection lost");
      });
      // Heard before the statement's caller hears the error (pg's own listener is added at connect).
      this.connection.on("errorMessage", (msg: { code?: string }) => {
        if (writable && msg.code === NOT_WRITABLE_SQLSTATE && this.hostIndex !== undefined) {
          selector.invalidate(this.hostIndex, "a statement was refused: read-only server (SQLSTATE 25006)");
          // Ending now: the statement still gets its error, and the pool drops a client that is
          // ending when it is released, so no one is handed this connection again.
          void this.end().catch(() => undefined);
        }
      });
    }

    override connect(): Promise<pg.Client>;
    override connect(callback: (err: Error | null, c?: pg.Client) => void): void;
    override connect(callback?: (err: Error | null, c?: pg.Client) => void): Promise<pg.Client> | undefined {
      const connected = this.connectToChosenHost();
      if (callback === undefined) return connected;
      connected.then(
        (c) => callback(null, c),
        (err: Error) => callback(err),
      );
      return undefined;
    }

    override end(): Promise<void>;
    override end(callback: (err: Error) => void): void;
    override end(callback?: (err: Error) => void): Promise<void> | undefined {
      this.closing = true;
      if (callback === undefined) return super.end();
      super.end(callback);
      return undefined;
    }

    private async connectToChosenHost(): Promise<pg.Client> {
      const index = await selector.pick();
      if (this.closing || this.connection.stream.destroyed) {
        throw new KiteqError(
          ErrorCode.StoreFailed,
          "connection attempt abandoned (timeout) while choosing the host",
        );
      }
      const address = selector.host(index);
      // pg connects to this.host/this.port (a leading '/' is a socket directory).
      if (address.host !== null) this.host = address.host;
      this.port = address.port ?? Number(process.env.PGPORT ?? pg.defaults.port ?? 5432);
      this.hostIndex = index;
      try {
        await super.connect();
      } catch (err) {
        selector.invalidate(index, (err as Error).message);
        throw err;
      }
      if (target.targetSessionAttrs === "any") return this;
      let state: ServerState;
      try {
        state = await readState(this);
      } catch (err) {
        await this.end().catch(() => undefined);
        selector.invalidate(index, (err as Error).message);
        throw err;
      }
      if (!qualifies(target.targetSessionAttrs, state) && target.targetSessionAttrs !== "prefer-standby") {
        await this.end().catch(() => undefined);
        selector.invalidate(index, `the server is ${describeState(state)}`);
        throw new KiteqError(
          ErrorCode.StoreFailed,
          `${hostLabel(address)} is ${describeState(state)}, not target_session_attrs=${target.targetSessionAttrs}: choosing again at the next connection`,
        );
      }
      return this;
    }
  };
}

/**
 * What a pool or a dedicated client is given for `url`: the Client class to make connections
 * with and the connection string. A single host wanting any server is pg's own connection;
 * otherwise connections follow the target's chosen host.
 */
export function clientSetup(
  url: string,
  log?: Logger,
): { Client: typeof BrokerClient; connectionString: string } {
  const target = connectionTarget(url);
  // hostUrls[0], not `url`: pg reads a libpq keyword=value string as a URL relative to a host
  // named "base" (a single-host --db in that form never connected).
  if (target.direct) return { Client: BrokerClient, connectionString: target.hostUrls[0] as string };
  const selector = hostSelector(url, target);
  selector.log ??= log;
  return { Client: failoverClientClass(selector), connectionString: target.hostUrls[0] as string };
}

/** A dedicated (unpooled) client on `url` with `config` (a multi-host target follows its primary). */
export function createClient(
  url: string,
  config: Omit<pg.ClientConfig, "connectionString">,
  log?: Logger,
): pg.Client {
  const { Client, connectionString } = clientSetup(url, log);
  return new Client({ ...config, connectionString });
}
