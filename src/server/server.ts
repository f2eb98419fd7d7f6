/**
 * The TCP listener of the KiteQ protocol: one Session per accepted connection, within the
 * node's connection limits (per node, per remote address). A connection over a limit is closed
 * at once, before any byte is read; refusals are logged rate-limited, not one line each.
 */
import net from "node:net";
import { ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import { RateLimitedLog } from "../log-limit.js";
import { listenFailure } from "./listen-failure.js";
import { Session, type SessionHandler } from "./session.js";

/** Options of a ProtocolServer (0 disables a limit or timer). */
export interface ProtocolServerOptions {
  /** Close a connection that sent nothing for this long. */
  idleTimeoutMs: number;
  /** Close a connection that has not completed its handshake this long after connect. */
  handshakeTimeoutMs?: number;
  /** Connections open at once on this node. */
  maxConnections?: number;
  /** Connections open at once from one remote address. */
  maxConnectionsPerAddress?: number;
  /** Unsent bytes one connection may hold before it is closed (a peer that stopped reading). */
  maxWriteBufferBytes?: number;
  logger: Logger;
}

/** The remote address a connection counts against: IPv4-mapped IPv6 as plain IPv4. */
export function remoteAddressOf(socket: net.Socket): string {
  const address = socket.remoteAddress ?? "?";
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** Listens for KiteQ clients and tracks their sessions. */
/** Connection lifecycle lines of one kind and group logged one by one per 10 s, then counted. */
const LIFECYCLE_LINES_FIRST = 20;

export class ProtocolServer {
  readonly sessions = new Set<Session>();
  private readonly server: net.Server;
  /** Open connections per remote address (entries removed at zero). */
  private readonly perAddress = new Map<string, number>();
  private readonly refusals: RateLimitedLog;
  private readonly lifecycle: RateLimitedLog;
  private refused = 0;

  constructor(
    private readonly handler: SessionHandler,
    private readonly options: ProtocolServerOptions,
  ) {
    this.refusals = new RateLimitedLog(options.logger);
    this.lifecycle = new RateLimitedLog(options.logger, { first: LIFECYCLE_LINES_FIRST });
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.on("error", (err) => this.options.logger.error({ err: err.message }, "listener error"));
  }

  /** Connections refused at once by a connection limit since start. */
  get refusedConnections(): number {
    return this.refused;
  }

  /** Start listening; resolves with the bound address (port 0 picks a free one). */
  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(listenFailure(err, "--bind", `${host}:${port}`));
      this.server.once("error", onError);
      this.server.listen({ host, port, backlog: 1024 }, () => {
        this.server.off("error", onError);
        const addr = this.server.address();
        if (addr === null || typeof addr === "string") return reject(new Error("no address"));
        resolve({ host: addr.address, port: addr.port });
      });
    });
  }

  /** Stop accepting connections (existing sessions stay open). */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Close every session (flushing what each has queued). */
  closeSessions(): void {
    for (const s of this.sessions) s.close();
    this.refusals.close();
    this.lifecycle.close();
  }

  private accept(socket: net.Socket): void {
    const address = remoteAddressOf(socket);
    const fromAddress = this.perAddress.get(address) ?? 0;
    const { maxConnections = 0, maxConnectionsPerAddress = 0 } = this.options;
    const limit =
      maxConnections > 0 && this.sessions.size >= maxConnections
        ? { scope: "node", max: maxConnections }
        : maxConnectionsPerAddress > 0 && fromAddress >= maxConnectionsPerAddress
          ? { scope: "address", max: maxConnectionsPerAddress }
          : undefined;
    if (limit !== undefined) {
      // Closed before a byte is read or written: nothing of the peer's reaches a Session.
      socket.on("error", () => undefined);
      socket.destroy();
      this.refused++;
      this.refusals.warn(
        `${ErrorCode.ConnectionLimit}:${limit.scope}`,
        {
          code: ErrorCode.ConnectionLimit,
          peer: address,
          limit: limit.scope,
          max: limit.max,
          open: limit.scope === "node" ? this.sessions.size : fromAddress,
        },
        limit.scope === "node"
          ? "connection refused: this node has its maximum of connections (maxConnections)"
          : "connection refused: its address has its maximum of connections (maxConnectionsPerAddress)",
      );
      return;
    }
    this.perAddress.set(address, fromAddress + 1);
    const session = new Session(
      socket,
      {
        ...this.handler,
        authenticate: (m, s) => this.handler.authenticate(m, s),
        onAuthenticated: (s) => this.handler.onAuthenticated(s),
        onPublish: (s, o, m, i) => this.handler.onPublish(s, o, m, i),
        onDeliverAck: (s, o, a) => this.handler.onDeliverAck(s, o, a),
        onTxAck: (s, o, t) => this.handler.onTxAck(s, o, t),
        onClose: (s) => {
          if (this.sessions.delete(s)) {
            const n = (this.perAddress.get(address) ?? 1) - 1;
            if (n <= 0) this.perAddress.delete(address);
            else this.perAddress.set(address, n);
          }
          this.handler.onClose(s);
        },
      },
      { ...this.options, refusals: this.refusals, lifecycle: this.lifecycle },
    );
    this.sessions.add(session);
  }
}
