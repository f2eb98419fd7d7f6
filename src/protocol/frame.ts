/**
 * KiteQ packet framing: a 19-byte big-endian header followed by the body (kiteq-wire.md,
 * "Framing"). Pure code: bytes in, packets out.
 */
import { ErrorCode, KiteqError } from "../errors.js";
import { commandName } from "./commands.js";

/** Bytes in a packet header: opaque u32, cmdType u8, version i16, extension i64, bodyLen i32. */
export const HEADER_LENGTH = 19;

/** Largest packet allowed, header included (2 MiB). */
export const MAX_PACKET_SIZE = 2 * 1024 * 1024;

/** Largest body allowed: MAX_PACKET_SIZE minus the header. */
export const MAX_BODY_LENGTH = MAX_PACKET_SIZE - HEADER_LENGTH;

/** One framed packet. */
export interface Packet {
  /** Request id chosen by the sender (u32); a response carries its request's opaque. */
  opaque: number;
  /** Command code (u8); see CommandType. Not checked here: unknown codes are framed too. */
  cmdType: number;
  /** Protocol version (i16); clients send 0. */
  version: number;
  /** Reserved (i64), 0. */
  extension: bigint;
  /** The protobuf body. */
  body: Buffer;
}

/** What encodePacket needs: a Packet whose version and extension default to 0. */
export interface PacketInit {
  opaque: number;
  cmdType: number;
  version?: number;
  extension?: bigint;
  body: Buffer;
}

const EMPTY = Buffer.alloc(0);

/**
 * Frame one packet: header and body in one new buffer (one allocation, one copy of the body).
 * Throws KiteqError FrameInvalid when the packet would exceed MAX_PACKET_SIZE, and a RangeError
 * (a programming error) when opaque, cmdType or version do not fit their fields.
 */
export function encodePacket(p: PacketInit): Buffer {
  const bodyLength = p.body.length;
  if (bodyLength > MAX_BODY_LENGTH) {
    throw new KiteqError(
      ErrorCode.FrameInvalid,
      `packet of ${HEADER_LENGTH + bodyLength} bytes exceeds the ${MAX_PACKET_SIZE}-byte limit`,
      { command: commandName(p.cmdType), opaque: p.opaque, bodyLength },
    );
  }
  const out = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength);
  out.writeUInt32BE(p.opaque, 0);
  out.writeUInt8(p.cmdType, 4);
  out.writeInt16BE(p.version ?? 0, 5);
  out.writeBigInt64BE(p.extension ?? 0n, 7);
  out.writeInt32BE(bodyLength, 15);
  p.body.copy(out, HEADER_LENGTH);
  return out;
}

/**
 * Incremental decoder for one connection's byte stream: push each chunk read from the socket,
 * get back the packets it completes (zero, one or many). Packets may span any number of chunks.
 *
 * Memory: chunks are kept in a list, never concatenated; a body lying inside one chunk is a view
 * of it (no copy), a body spanning chunks is copied once into a buffer of its exact size. So the
 * caller must not reuse or modify a chunk after pushing it (a socket's own `data` buffers are
 * fine; a shared `onread` buffer is not). At most one packet (<= MAX_PACKET_SIZE) plus the rest
 * of the last chunk is ever buffered.
 *
 * Errors: a negative bodyLen, or header + body > MAX_PACKET_SIZE, throws KiteqError FrameInvalid
 * as soon as the header is complete, before anything is allocated for the body. Framing is then
 * lost: the decoder is unusable (every later push throws the same error) and the connection must
 * be closed. Packets completed earlier in the same push are lost with the throw.
 */
export class FrameDecoder {
  /** Unconsumed chunks start at #chunks[#first], byte #offset. */
  #chunks: Buffer[] = [];
  #first = 0;
  #offset = 0;
  #buffered = 0;
  #failure: KiteqError | undefined;
  readonly #header = Buffer.allocUnsafe(HEADER_LENGTH);

  /** Bytes received but not yet returned as packets. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Feed one chunk; returns the packets it completes, in order. */
  push(chunk: Buffer): Packet[] {
    if (this.#failure !== undefined) throw this.#failure;
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    const packets: Packet[] = [];
    while (this.#buffered >= HEADER_LENGTH) {
      const packet = this.#next();
      if (packet === undefined) break;
      packets.push(packet);
    }
    this.#compact();
    return packets;
  }

  /** The next whole packet, or undefined while its bytes have not all arrived. */
  #next(): Packet | undefined {
    let head = this.#chunks[this.#first]!;
    let at = this.#offset;
    if (head.length - at < HEADER_LENGTH) {
      this.#peek(this.#header, HEADER_LENGTH);
      head = this.#header;
      at = 0;
    }
    const bodyLength = head.readInt32BE(at + 15);
    const opaque = head.readUInt32BE(at);
    const cmdType = head[at + 4]!;
    if (bodyLength < 0 || bodyLength > MAX_BODY_LENGTH) {
      this.#failure = new KiteqError(
        ErrorCode.FrameInvalid,
        bodyLength < 0
          ? `negative body length ${bodyLength}`
          : `packet of ${HEADER_LENGTH + bodyLength} bytes exceeds the ${MAX_PACKET_SIZE}-byte limit`,
        { command: commandName(cmdType), opaque, bodyLength },
      );
      throw this.#failure;
    }
    if (this.#buffered - HEADER_LENGTH < bodyLength) return undefined;
    const version = head.readInt16BE(at + 5);
    const high = head.readInt32BE(at + 7);
    const low = head.readUInt32BE(at + 11);
    const extension = high === 0 && low === 0 ? 0n : (BigInt(high) << 32n) | BigInt(low);
    this.#skip(HEADER_LENGTH);
    return { opaque, cmdType, version, extension, body: this.#take(bodyLength) };
  }

  /** Copy the first `n` buffered bytes into `dest` without consuming them. */
  #peek(dest: Buffer, n: number): void {
    let copied = 0;
    let offset = this.#offset;
    for (let i = this.#first; copied < n; i++) {
      const chunk = this.#chunks[i]!;
      copied += chunk.copy(dest, copied, offset, Math.min(chunk.length, offset + n - copied));
      offset = 0;
    }
  }

  /** Consume `n` buffered bytes. */
  #skip(n: number): void {
    this.#buffered -= n;
    let left = n;
    while (left > 0) {
      const available = this.#chunks[this.#first]!.length - this.#offset;
      if (available > left) {
        this.#offset += left;
        return;
      }
      left -= available;
      this.#first++;
      this.#offset = 0;
    }
  }

  /** Consume `n` buffered bytes as a buffer: a view when they lie in one chunk, else one copy. */
  #take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const head = this.#chunks[this.#first]!;
    if (head.length - this.#offset >= n) {
      const view = head.subarray(this.#offset, this.#offset + n);
      this.#skip(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    this.#peek(out, n);
    this.#skip(n);
    return out;
  }

  /** Drop consumed chunks from the list. */
  #compact(): void {
    if (this.#first === 0) return;
    this.#chunks = this.#first >= this.#chunks.length ? [] : this.#chunks.slice(this.#first);
    this.#first = 0;
  }
}
