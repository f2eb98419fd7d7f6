/**
 * One Session per client connection: framing, handshake, heartbeat, idle timeout, and routing of
 * requests to the broker's handlers. Protocol errors are logged with the peer address and a
 * stable code; only a loss of framing closes the connection.
 */
import type net from "node:net";
import { ErrorCode, type KiteqError, toKiteqError } from "../errors.js";
import type { Logger } from "../log.js";
import type { RateLimitedLog } from "../log-limit.js";
import { decodeBody } from "../protocol/body.js";
import { CommandType, commandName } from "../protocol/commands.js";
import { encodePacket, FrameDecoder, type Packet } from "../protocol/frame.js";
import {
  type BytesMessage,
  type ConnMeta,
  type DeliverAck,
  encodeConnAuthAck,
  encodeHeartBeat,
  encodeMessageStoreAck,
  type StringMessage,
  type TxACKPacket,
} from "../protocol/messages.js";
import { PacketBatcher } from "../protocol/packet-batcher.js";

/** What the broker does with a session's requests. */
export interface SessionHandler {
  /** null: accepted; a string: the refusal reason. */
  authenticate(meta: ConnMeta, session: Session): string | null;
  onAuthenticated(session: Session): void;
  onPublish(session: Session, opaque: number, message: BytesMessage | StringMessage, isString: boolean): void;
  onDeliverAck(session: Session, opaque: number, ack: DeliverAck): void;
  onTxAck(session: Session, opaque: number, tx: TxACKPacket): void;
  /** A heartbeat's answer waits for this, when given (the broker's bindings re-read). */
  beforeHeartbeatReply?(session: Session): Promise<void> | undefined;
  onClose(session: Session): void;
}

/** Options shared by all sessions of a server. */
export interface SessionOptions {
  /** Close a connection that sent nothing for this long (0: never). */
  idleTimeoutMs: number;
  /** Close a connection whose handshake is not done this long after connect (0: never). */
  handshakeTimeoutMs?: number;
  /**
   * Close a connection holding more unsent bytes than this while its peer takes nothing for a
   * second (a peer that stopped reading); 0: no bound.
   */
  maxWriteBufferBytes?: number;
  logger: Logger;
  /** Where warnings a peer can repeat at will (handshake timeouts) go, rate-limited. */
  refusals?: RateLimitedLog;
  /**
   * Where a connection's opened / handshake accepted / closed lines go, rate-limited per kind and
   * group (absent: the session's own logger): a client reconnecting in a loop wrote three lines a
   * connection (600 a minute in a walkthrough).
   */
  lifecycle?: RateLimitedLog;
}

let nextSessionId = 1;

/** A client connection after accept. */
export class Session {
  readonly id: string;
  readonly peer: string;
  readonly connectedAtMs = Date.now();
  readonly log: Logger;
  /** Set by a successful handshake. */
  groupId: string | undefined;
  warmingupSec = 0;
  /**
   * It published an uncommitted (2PC) message or sent a TX_ACK: a producer that answers
   * check-backs. Checks go to such connections of a group first (a consumer connection of the same
   * group name ignores them, and each ignored check cost a backoff step).
   */
  answersTxChecks = false;
  private readonly decoder = new FrameDecoder();
  /** Back-pressure: a peer that does not read stops being read from until it catches up. */
  private readonly out: PacketBatcher;
  private closed = false;
  private nextOpaque = 1;
  /** Protocol errors seen; only the first few are logged one by one (a broken client floods). */
  private protocolErrors = 0;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private readonly lifecycle: RateLimitedLog | undefined;

  constructor(
    private readonly socket: net.Socket,
    private readonly handler: SessionHandler,
    options: SessionOptions,
  ) {
    this.id = `c${nextSessionId++}`;
    this.peer = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`;
    this.log = options.logger.child({ connection: this.id, peer: this.peer });
    this.lifecycle = options.lifecycle;
    socket.setNoDelay(true);
    const maxUnsent = options.maxWriteBufferBytes ?? 0;
    this.out = new PacketBatcher(
      socket,
      () => socket.pause(),
      maxUnsent > 0
        ? { maxUnsentBytes: maxUnsent, onOverflow: (unsent) => this.onSlowReader(unsent, maxUnsent) }
        : undefined,
    );
    // From connect, not restarted by bytes (the idle timer is): a peer that trickles one byte a
    // second never finishes its handshake and is closed all the same.
    const handshakeMs = options.handshakeTimeoutMs ?? 0;
    if (handshakeMs > 0) {
      this.handshakeTimer = setTimeout(
        () => this.onHandshakeTimeout(handshakeMs, options.refusals),
        handshakeMs,
      );
      this.handshakeTimer.unref();
    }
    if (options.idleTimeoutMs > 0) {
      socket.setTimeout(options.idleTimeoutMs, () => {
        this.log.info({ code: "KQ_IDLE" }, "closing idle connection");
        this.close();
      });
    }
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.log.info({ err: err.message }, "connection error"));
    socket.on("close", () => {
      clearTimeout(this.handshakeTimer);
      this.out.dispose();
      this.closed = true;
      this.logLifecycle("closed", { groupId: this.groupId }, "connection closed");
      this.handler.onClose(this);
    });
    socket.on("drain", () => socket.resume());
    this.logLifecycle("opened", {}, "connection opened");
  }

  /** A lifecycle line: rate-limited per kind and group when the server gives a limiter. */
  private logLifecycle(kind: string, fields: Record<string, unknown>, msg: string): void {
    if (this.lifecycle === undefined) {
      this.log.info(fields, msg);
      return;
    }
    this.lifecycle.info(
      `${kind} ${this.groupId ?? ""}`,
      { connection: this.id, peer: this.peer, ...fields },
      msg,
    );
  }

  get isAuthenticated(): boolean {
    return this.groupId !== undefined;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** A fresh opaque for a request this broker sends (push, tx check). */
  allocateOpaque(): number {
    const o = this.nextOpaque;
    this.nextOpaque = o >= 0xffffffff ? 1 : o + 1;
    return o;
  }

  /** Queue one packet; packets queued in the same turn go out in one write. */
  send(cmdType: number, opaque: number, body: Buffer, version = 0): void {
    if (this.closed) return;
    this.out.push(encodePacket({ opaque, cmdType, version, body }));
  }

  /** Answer a publish. */
  sendStoreAck(opaque: number, messageId: string, status: boolean, feedback: string): void {
    this.send(CommandType.MESSAGE_STORE_ACK, opaque, encodeMessageStoreAck({ messageId, status, feedback }));
  }

  /** Flush what is queued, then close. */
  close(): void {
    if (this.closed) return;
    this.out.flush();
    this.closed = true;
    this.socket.end();
    // A peer that never reads must not keep the socket half-open for ever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  private onData(chunk: Buffer): void {
    let packets: Packet[];
    try {
      packets = this.decoder.push(chunk);
    } catch (err) {
      const e = toKiteqError(err, { connection: this.id, peer: this.peer }, ErrorCode.FrameInvalid);
      this.log.warn({ code: e.code, err: e.message }, "framing lost, closing connection");
      this.socket.destroy();
      return;
    }
    for (const p of packets) {
      if (this.closed) return;
      this.onPacket(p);
    }
  }

  private onPacket(p: Packet): void {
    let decoded: ReturnType<typeof decodeBody>;
    try {
      decoded = decodeBody(p.cmdType, p.body);
    } catch (err) {
      this.onBadBody(p, toKiteqError(err, { connection: this.id, peer: this.peer }, ErrorCode.BodyInvalid));
      return;
    }
    if (!this.isAuthenticated && decoded.cmd !== "CONN_META") {
      this.log.warn(
        { code: ErrorCode.NotAuthenticated, command: decoded.cmd },
        "request before handshake refused, closing connection",
      );
      if (decoded.cmd === "BYTES_MESSAGE" || decoded.cmd === "STRING_MESSAGE") {
        this.sendStoreAck(
          p.opaque,
          decoded.msg.header.messageId,
          false,
          "not authenticated: send CONN_META first",
        );
      }
      this.close();
      return;
    }
    try {
      switch (decoded.cmd) {
        case "CONN_META":
          this.onConnMeta(p.opaque, decoded.msg);
          return;
        case "HEARTBEAT": {
          const reply = () => {
            if (this.closed) return;
            this.send(
              CommandType.HEARTBEAT,
              p.opaque,
              encodeHeartBeat({ version: decoded.msg.version }),
              p.version,
            );
          };
          const first = this.handler.beforeHeartbeatReply?.(this);
          if (first === undefined) reply();
          else void first.then(reply, reply);
          return;
        }
        case "BYTES_MESSAGE":
          this.handler.onPublish(this, p.opaque, decoded.msg, false);
          return;
        case "STRING_MESSAGE":
          this.handler.onPublish(this, p.opaque, decoded.msg, true);
          return;
        case "DELIVER_ACK":
          this.handler.onDeliverAck(this, p.opaque, decoded.msg);
          return;
        case "TX_ACK":
          this.handler.onTxAck(this, p.opaque, decoded.msg);
          return;
        default:
          this.logProtocolError(
            { code: ErrorCode.UnknownCommand, command: decoded.cmd },
            "command not accepted from a client, ignored",
          );
      }
    } catch (err) {
      const e = toKiteqError(err, { connection: this.id, peer: this.peer, command: decoded.cmd });
      this.log.error({ code: e.code, err: e.message }, "request failed");
    }
  }

  private onConnMeta(opaque: number, meta: ConnMeta): void {
    if (this.isAuthenticated) {
      this.send(
        CommandType.CONN_AUTH,
        opaque,
        encodeConnAuthAck({ status: true, feedback: "already authenticated" }),
      );
      return;
    }
    const refusal = this.handler.authenticate(meta, this);
    if (refusal !== null) {
      this.log.warn({ code: ErrorCode.AuthRefused, groupId: meta.groupId }, `handshake refused: ${refusal}`);
      this.send(CommandType.CONN_AUTH, opaque, encodeConnAuthAck({ status: false, feedback: refusal }));
      this.close();
      return;
    }
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.groupId = meta.groupId;
    this.warmingupSec = Math.max(0, meta.warmingupSec);
    this.send(CommandType.CONN_AUTH, opaque, encodeConnAuthAck({ status: true, feedback: "authenticated" }));
    this.logLifecycle(
      "handshake",
      { groupId: meta.groupId, warmingupSec: this.warmingupSec },
      "handshake accepted",
    );
    this.handler.onAuthenticated(this);
  }

  /** Bytes queued for this peer that the kernel has not taken yet. */
  get unsentBytes(): number {
    return this.out.unsentBytes;
  }

  /** The handshake deadline passed: close at once (nothing to flush before a handshake). */
  private onHandshakeTimeout(deadlineMs: number, refusals: RateLimitedLog | undefined): void {
    if (this.closed || this.isAuthenticated) return;
    const fields = { code: ErrorCode.HandshakeTimeout, peer: this.peer, connection: this.id, deadlineMs };
    const msg = "no handshake within the deadline, closing connection";
    if (refusals !== undefined) refusals.warn(ErrorCode.HandshakeTimeout, fields, msg);
    else this.log.warn(fields, msg);
    this.closed = true;
    this.socket.destroy();
  }

  /**
   * The peer stopped reading and its unsent bytes passed the bound: drop them and close now (once,
   * logged once). The 'close' event then hands its unacked pushes back for redelivery (the
   * handler's onClose, i.e. the dispatcher's removeSession).
   */
  private onSlowReader(unsentBytes: number, maxUnsentBytes: number): void {
    if (this.closed) return;
    this.log.warn(
      { code: ErrorCode.SlowConsumer, groupId: this.groupId, unsentBytes, maxUnsentBytes },
      "peer is not reading: unsent bytes passed the write buffer bound, closing connection",
    );
    this.closed = true;
    this.socket.destroy();
  }

  /** Log a protocol error: the first 10 of a connection, then one line per 1,000. */
  private logProtocolError(fields: Record<string, unknown>, msg: string): void {
    this.protocolErrors++;
    if (this.protocolErrors <= 10) this.log.warn(fields, msg);
    else if (this.protocolErrors % 1000 === 0) {
      this.log.warn({ ...fields, protocolErrors: this.protocolErrors }, `${msg} (more suppressed)`);
    }
  }

  private onBadBody(p: Packet, e: KiteqError): void {
    const command = commandName(p.cmdType);
    this.logProtocolError({ code: e.code, command, opaque: p.opaque, err: e.message }, "bad request");
    // Answer where the command has an answer, so the producer is not left waiting.
    if (p.cmdType === CommandType.BYTES_MESSAGE || p.cmdType === CommandType.STRING_MESSAGE) {
      this.sendStoreAck(p.opaque, "", false, e.message);
    }
  }
}
