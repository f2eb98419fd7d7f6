/**
 * A KiteQ protocol client connection: connect, handshake, heartbeat, publish and await the store
 * ack, receive pushes and answer them, answer transaction checks. Used by the SDK, the CLI, the
 * tests and the bench.
 */
import { randomUUID } from "node:crypto";
import net from "node:net";
import { ErrorCode, KiteqError } from "../errors.js";
import { decodeBody } from "../protocol/body.js";
import { CommandType } from "../protocol/commands.js";
import { encodePacket, FrameDecoder, type Packet } from "../protocol/frame.js";
import {
  type BytesMessage,
  encodeBytesMessage,
  encodeConnMeta,
  encodeDeliverAck,
  encodeHeartBeat,
  encodeStringMessage,
  encodeTxACKPacket,
  type Header,
  type MessageStoreAck,
  type StringMessage,
  type TxACKPacket,
} from "../protocol/messages.js";
import { PacketBatcher } from "../protocol/packet-batcher.js";

/** Options of a client connection. */
export interface ConnectionOptions {
  host: string;
  port: number;
  groupId: string;
  secretKey?: string;
  warmingupSec?: number;
  /** Heartbeat interval; 0 disables. Default 5 s. */
  heartbeatMs?: number;
  /** Timeout of connect + handshake and of each request. Default 10 s. */
  timeoutMs?: number;
  /**
   * Push handler, in place before the handshake: a broker pushes as soon as the handshake is
   * done, and that push can arrive in the same TCP chunk as the handshake's reply, before code
   * awaiting connect() could call onMessage() (it was answered false: one needless redelivery).
   */
  onMessage?: PushHandler;
  /** Transaction-check handler, in place before the handshake (see onMessage). */
  onTxCheck?: TxCheckHandler;
}

/** A pushed message as the consumer sees it. */
export interface PushedMessage {
  header: Header;
  body: Buffer | string;
  isString: boolean;
  /** False once the connection it came on closed: an answer then reaches nobody. */
  answerable(): boolean;
}

/** Consumer callback: true = done, false = redeliver later. A throw counts as false. */
export type PushHandler = (message: PushedMessage) => boolean | Promise<boolean>;

/** Producer callback for a broker's transaction check: 1 commit, 2 rollback, 0 unknown. */
export type TxCheckHandler = (header: Header) => number | Promise<number>;

interface Waiter {
  resolve(p: Packet): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** A fresh KiteQ message id: a UUID without dashes (32 hex characters). */
export function newMessageId(): string {
  return randomUUID().replaceAll("-", "");
}

/** A header with KiteQ's defaults; `topic`, `messageType` and `groupId` are required. */
export function buildHeader(h: Partial<Header> & Pick<Header, "topic" | "messageType" | "groupId">): Header {
  return {
    messageId: newMessageId(),
    expiredTime: -1,
    deliverLimit: 100,
    commit: true,
    fly: false,
    properties: [],
    createTime: Math.floor(Date.now() / 1000),
    snappy: false,
    ...h,
  };
}

/** How long close() lets queued packets drain to a broker that is not reading them. */
const CLOSE_DRAIN_MS = 5_000;

/** One connection to a broker. */
export class KiteqConnection {
  private readonly decoder = new FrameDecoder();
  private readonly waiters = new Map<number, Waiter>();
  private nextOpaque = 1;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly out: PacketBatcher;
  private pushHandler: PushHandler | undefined;
  private txHandler: TxCheckHandler | undefined;
  private closeListeners: ((err?: Error) => void)[] = [];
  readonly timeoutMs: number;

  private constructor(
    private readonly socket: net.Socket,
    readonly options: ConnectionOptions,
  ) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.pushHandler = options.onMessage;
    this.txHandler = options.onTxCheck;
    socket.setNoDelay(true);
    this.out = new PacketBatcher(socket);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => undefined);
    socket.on("close", () => this.onClosed());
  }

  /** Connect and complete the handshake; rejects if the broker refuses it. */
  static async connect(options: ConnectionOptions): Promise<KiteqConnection> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: options.host, port: options.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new KiteqError(ErrorCode.Timeout, `connect to ${options.host}:${options.port} timed out`));
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once("error", (err) => {
        clearTimeout(timer);
        reject(
          new KiteqError(
            ErrorCode.ConnectionClosed,
            `connect to ${options.host}:${options.port}: ${err.message}`,
          ),
        );
      });
    });
    const conn = new KiteqConnection(socket, options);
    const reply = await conn
      .request(
        CommandType.CONN_META,
        encodeConnMeta({
          groupId: options.groupId,
          secretKey: options.secretKey ?? "",
          warmingupSec: options.warmingupSec ?? 0,
        }),
      )
      .catch((err: unknown) => {
        // A broker at its connection limits (--max-connections, --max-connections-per-address)
        // closes a new connection at once, unanswered: it said only "connection closed".
        if (err instanceof KiteqError && err.code === ErrorCode.ConnectionClosed) {
          throw new KiteqError(
            ErrorCode.ConnectionClosed,
            `${options.host}:${options.port} closed the connection before answering the handshake ` +
              "(a broker at its connection limits closes new connections so: see its log)",
            { groupId: options.groupId },
          );
        }
        throw err;
      });
    const auth = decodeBody(reply.cmdType, reply.body);
    if (auth.cmd !== "CONN_AUTH" || !auth.msg.status) {
      conn.close();
      const feedback = auth.cmd === "CONN_AUTH" ? auth.msg.feedback : auth.cmd;
      throw new KiteqError(ErrorCode.AuthRefused, `handshake refused: ${feedback}`, {
        groupId: options.groupId,
      });
    }
    const hb = options.heartbeatMs ?? 5000;
    if (hb > 0) {
      conn.heartbeat = setInterval(() => {
        conn.request(CommandType.HEARTBEAT, encodeHeartBeat({ version: Date.now() })).catch(() => undefined);
      }, hb);
      conn.heartbeat.unref();
    }
    return conn;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Publish a message; resolves with the broker's store ack (status false is not a throw). */
  async publish(header: Header, body: Buffer | string): Promise<MessageStoreAck> {
    const isString = typeof body === "string";
    const payload = isString
      ? encodeStringMessage({ header, body } as StringMessage)
      : encodeBytesMessage({ header, body } as BytesMessage);
    const reply = await this.request(
      isString ? CommandType.STRING_MESSAGE : CommandType.BYTES_MESSAGE,
      payload,
    );
    const ack = decodeBody(reply.cmdType, reply.body);
    if (ack.cmd !== "MESSAGE_STORE_ACK") {
      throw new KiteqError(ErrorCode.BodyInvalid, `expected MESSAGE_STORE_ACK, got ${ack.cmd}`);
    }
    return ack.msg;
  }

  /**
   * Two-phase commit: publish `header` with commit=false, await the store ack, run the local
   * transaction, then send TX_ACK 1 (it returned true: commit) or 2 (false: rollback). A throw of
   * the local transaction sends the rollback and is rethrown. A refused publish throws (with the
   * broker's feedback) and the local transaction is not run. If the TX_ACK is lost, the broker
   * asks again: answer with onTxCheck.
   */
  async sendTx(
    header: Header,
    body: Buffer | string,
    localTransaction: () => Promise<boolean> | boolean,
  ): Promise<{ messageId: string; committed: boolean }> {
    const h: Header = { ...header, commit: false };
    const ack = await this.publish(h, body);
    if (!ack.status) {
      throw new KiteqError(ErrorCode.StoreFailed, `uncommitted message refused: ${ack.feedback}`, {
        messageId: h.messageId,
      });
    }
    let committed: boolean;
    try {
      committed = (await localTransaction()) === true;
    } catch (err) {
      this.sendTxAck(h, 2, "local transaction failed");
      throw err;
    }
    this.sendTxAck(
      h,
      committed ? 1 : 2,
      committed ? "local transaction committed" : "local transaction rolled back",
    );
    return { messageId: h.messageId, committed };
  }

  /** Send a producer's TX_ACK (1 commit, 2 rollback, 0 unknown). The broker does not answer. */
  sendTxAck(header: Header, status: number, feedback = "", opaque = this.allocateOpaque()): void {
    this.write(CommandType.TX_ACK, opaque, encodeTxACKPacket({ header, status, feedback }));
  }

  /** Receive pushed messages (consumer). */
  onMessage(handler: PushHandler): void {
    this.pushHandler = handler;
  }

  /** Answer the broker's transaction checks (producer of 2PC messages). */
  onTxCheck(handler: TxCheckHandler): void {
    this.txHandler = handler;
  }

  /** Called once when the connection closes (with the cause when it was not close()). */
  onClose(listener: (err?: Error) => void): void {
    this.closeListeners.push(listener);
  }

  /** Send a request and await the packet answering its opaque. */
  request(cmdType: number, body: Buffer): Promise<Packet> {
    if (this.closed) return Promise.reject(new KiteqError(ErrorCode.ConnectionClosed, "connection closed"));
    const opaque = this.allocateOpaque();
    return new Promise<Packet>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(opaque);
        reject(new KiteqError(ErrorCode.Timeout, `no answer within ${this.timeoutMs} ms`, { opaque }));
      }, this.timeoutMs);
      this.waiters.set(opaque, { resolve, reject, timer });
      this.write(cmdType, opaque, body);
    });
  }

  /** Close the connection; outstanding requests fail with ConnectionClosed. */
  close(): void {
    if (this.closed) return;
    this.out.flush();
    // Destroyed once what is queued has reached the kernel (which still sends it after the
    // close): destroying at once dropped what a broker was not reading yet (a consumer's last
    // acks: redelivered). Bounded, for a broker that stopped reading for good.
    const socket = this.socket;
    const timer = setTimeout(() => socket.destroy(), CLOSE_DRAIN_MS);
    timer.unref();
    socket.end(() => {
      clearTimeout(timer);
      socket.destroy();
    });
    this.onClosed();
  }

  private allocateOpaque(): number {
    const o = this.nextOpaque;
    this.nextOpaque = o >= 0x7fffffff ? 1 : o + 1;
    return o;
  }

  /** Queue one packet (see PacketBatcher: one write per event-loop turn). */
  private write(cmdType: number, opaque: number, body: Buffer): void {
    if (!this.closed) this.out.push(encodePacket({ opaque, cmdType, body }));
  }

  private onClosed(): void {
    if (this.closed && this.waiters.size === 0 && this.heartbeat === undefined) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    for (const [, w] of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new KiteqError(ErrorCode.ConnectionClosed, "connection closed"));
    }
    this.waiters.clear();
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const l of listeners) l();
  }

  private onData(chunk: Buffer): void {
    // Between close() and the socket's end: nothing more is handled (the broker redelivers).
    if (this.closed) return;
    let packets: Packet[];
    try {
      packets = this.decoder.push(chunk);
    } catch {
      this.close();
      return;
    }
    for (const p of packets) this.onPacket(p);
  }

  private onPacket(p: Packet): void {
    if (p.cmdType === CommandType.BYTES_MESSAGE || p.cmdType === CommandType.STRING_MESSAGE) {
      this.onPush(p);
      return;
    }
    if (p.cmdType === CommandType.TX_ACK) {
      this.onTxPacket(p);
      return;
    }
    const w = this.waiters.get(p.opaque);
    if (w === undefined) return;
    this.waiters.delete(p.opaque);
    clearTimeout(w.timer);
    w.resolve(p);
  }

  private onPush(p: Packet): void {
    const decoded = decodeBody(p.cmdType, p.body);
    if (decoded.cmd !== "BYTES_MESSAGE" && decoded.cmd !== "STRING_MESSAGE") return;
    const { header } = decoded.msg;
    const isString = decoded.cmd === "STRING_MESSAGE";
    const opaque = p.opaque;
    const handler = this.pushHandler;
    if (handler === undefined) {
      this.answerPush(opaque, header, false, "no handler");
      return;
    }
    const body = isString ? decoded.msg.body : Buffer.from(decoded.msg.body);
    // No closure per push unless the handler is async (run under tsx, each named closure also
    // costs a defineProperty: 7% of the bench consumer's CPU in a burn-down).
    try {
      const r = handler({ header, body, isString, answerable: this.answerable });
      if (typeof r === "boolean") this.answerPush(opaque, header, r, "");
      else
        r.then(
          (ok) => this.answerPush(opaque, header, ok, ""),
          (err: unknown) => this.answerPush(opaque, header, false, String(err)),
        );
    } catch (err) {
      this.answerPush(opaque, header, false, String(err));
    }
  }

  /** Whether an answer can still reach the broker (the connection is open). */
  private readonly answerable = (): boolean => !this.closed;

  private answerPush(opaque: number, header: Header, status: boolean, feedback: string): void {
    this.write(
      CommandType.DELIVER_ACK,
      opaque,
      encodeDeliverAck({
        messageId: header.messageId,
        topic: header.topic,
        messageType: header.messageType,
        groupId: this.options.groupId,
        status,
        feedback,
      }),
    );
  }

  private onTxPacket(p: Packet): void {
    const decoded = decodeBody(p.cmdType, p.body);
    if (decoded.cmd !== "TX_ACK") return;
    const tx: TxACKPacket = decoded.msg;
    const handler = this.txHandler;
    if (handler === undefined) return;
    Promise.resolve()
      .then(() => handler(tx.header))
      .then(
        (status) => this.sendTxAck(tx.header, status, "client answer", p.opaque),
        () => this.sendTxAck(tx.header, 0, "check handler failed", p.opaque),
      );
  }
}
