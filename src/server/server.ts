/**
 * The TCP listener of the KiteQ protocol: one Session per accepted connection.
 */
import net from "node:net";
import type { Logger } from "../log.js";
import { Session, type SessionHandler } from "./session.js";

/** Listens for KiteQ clients and tracks their sessions. */
export class ProtocolServer {
  readonly sessions = new Set<Session>();
  private readonly server: net.Server;

  constructor(
    private readonly handler: SessionHandler,
    private readonly options: { idleTimeoutMs: number; logger: Logger },
  ) {
    this.server = net.createServer((socket) => {
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
            this.sessions.delete(s);
            this.handler.onClose(s);
          },
        },
        this.options,
      );
      this.sessions.add(session);
    });
    this.server.on("error", (err) => this.options.logger.error({ err: err.message }, "listener error"));
  }

  /** Start listening; resolves with the bound address (port 0 picks a free one). */
  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
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
  }
}
