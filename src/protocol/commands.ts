/**
 * KiteQ command codes (the `cmdType` byte of the packet header) and the response status codes
 * clients use. The codes are KiteQ's: see kiteq-wire.md, "Command codes".
 */

/** Command codes, by name. The body of each is the protobuf message named in the comment. */
export const CommandType = {
  /** HeartBeat: client ping; the broker answers with the same opaque and version. */
  HEARTBEAT: 0x01,
  /** ConnMeta: the client's handshake, its first packet. */
  CONN_META: 0x02,
  /** ConnAuthAck: the broker's answer to CONN_META. */
  CONN_AUTH: 0x03,
  /** MessageStoreAck: the broker's answer to a published message. */
  MESSAGE_STORE_ACK: 0x04,
  /** DeliverAck: the consumer's answer to a pushed message. */
  DELIVER_ACK: 0x05,
  /** TxACKPacket: transaction check (broker -> producer) and its answer. */
  TX_ACK: 0x06,
  /** BytesMessage: publish (producer -> broker) and push (broker -> consumer). */
  BYTES_MESSAGE: 0x11,
  /** StringMessage: same as BYTES_MESSAGE with a string body. */
  STRING_MESSAGE: 0x12,
} as const;

/** A known command code. */
export type CommandType = (typeof CommandType)[keyof typeof CommandType];

/** A known command name (`"HEARTBEAT"`, ...). */
export type CommandName = keyof typeof CommandType;

const NAMES: ReadonlyMap<number, CommandName> = new Map(
  (Object.keys(CommandType) as CommandName[]).map((name) => [CommandType[name], name]),
);

/** Whether `n` is a command code this broker knows. */
export function isKnownCommand(n: number): n is CommandType {
  return NAMES.has(n);
}

/** The name of a command code; for an unknown code, `UNKNOWN(0x..)` (for logs). */
export function commandName(n: CommandType): CommandName;
export function commandName(n: number): string;
export function commandName(n: number): string {
  return NAMES.get(n) ?? `UNKNOWN(0x${n.toString(16).padStart(2, "0")})`;
}

/** Response status codes used by KiteQ clients. */
export const ResponseStatus = {
  /** The request succeeded. */
  SUCCESS: 200,
  /** The request failed. */
  FAILURE: 500,
  /** No answer in time. */
  TIMEOUT: 501,
} as const;

/** A response status code. */
export type ResponseStatus = (typeof ResponseStatus)[keyof typeof ResponseStatus];
