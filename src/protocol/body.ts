/**
 * One switch from command code to message codec, so the server can route on the decoded result.
 */
import { ErrorCode, KiteqError } from "../errors.js";
import { type CommandName, CommandType, commandName } from "./commands.js";
import {
  type BytesMessage,
  type ConnAuthAck,
  type ConnMeta,
  type DeliverAck,
  decodeBytesMessage,
  decodeConnAuthAck,
  decodeConnMeta,
  decodeDeliverAck,
  decodeHeartBeat,
  decodeMessageStoreAck,
  decodeStringMessage,
  decodeTxACKPacket,
  encodeBytesMessage,
  encodeConnAuthAck,
  encodeConnMeta,
  encodeDeliverAck,
  encodeHeartBeat,
  encodeMessageStoreAck,
  encodeStringMessage,
  encodeTxACKPacket,
  type HeartBeat,
  type MessageStoreAck,
  type StringMessage,
  type TxACKPacket,
} from "./messages.js";

/** The body message of each command. */
export interface CommandMessages {
  HEARTBEAT: HeartBeat;
  CONN_META: ConnMeta;
  CONN_AUTH: ConnAuthAck;
  MESSAGE_STORE_ACK: MessageStoreAck;
  DELIVER_ACK: DeliverAck;
  TX_ACK: TxACKPacket;
  BYTES_MESSAGE: BytesMessage;
  STRING_MESSAGE: StringMessage;
}

/** A decoded body tagged with its command: `{ cmd: "HEARTBEAT", msg: HeartBeat } | ...`. */
export type CommandBody = { [K in CommandName]: { cmd: K; msg: CommandMessages[K] } }[CommandName];

/**
 * Decode the body of a packet by its command code. Throws KiteqError UnknownCommand for a code
 * this broker does not know, BodyInvalid for a body that does not decode.
 */
export function decodeBody(cmdType: number, body: Buffer): CommandBody {
  switch (cmdType) {
    case CommandType.HEARTBEAT:
      return { cmd: "HEARTBEAT", msg: decodeHeartBeat(body) };
    case CommandType.CONN_META:
      return { cmd: "CONN_META", msg: decodeConnMeta(body) };
    case CommandType.CONN_AUTH:
      return { cmd: "CONN_AUTH", msg: decodeConnAuthAck(body) };
    case CommandType.MESSAGE_STORE_ACK:
      return { cmd: "MESSAGE_STORE_ACK", msg: decodeMessageStoreAck(body) };
    case CommandType.DELIVER_ACK:
      return { cmd: "DELIVER_ACK", msg: decodeDeliverAck(body) };
    case CommandType.TX_ACK:
      return { cmd: "TX_ACK", msg: decodeTxACKPacket(body) };
    case CommandType.BYTES_MESSAGE:
      return { cmd: "BYTES_MESSAGE", msg: decodeBytesMessage(body) };
    case CommandType.STRING_MESSAGE:
      return { cmd: "STRING_MESSAGE", msg: decodeStringMessage(body) };
    default:
      throw new KiteqError(ErrorCode.UnknownCommand, `unknown command ${commandName(cmdType)}`, {
        command: commandName(cmdType),
      });
  }
}

/** Encode a tagged body; its command code is `CommandType[b.cmd]`. */
export function encodeBody(b: CommandBody): Buffer {
  switch (b.cmd) {
    case "HEARTBEAT":
      return encodeHeartBeat(b.msg);
    case "CONN_META":
      return encodeConnMeta(b.msg);
    case "CONN_AUTH":
      return encodeConnAuthAck(b.msg);
    case "MESSAGE_STORE_ACK":
      return encodeMessageStoreAck(b.msg);
    case "DELIVER_ACK":
      return encodeDeliverAck(b.msg);
    case "TX_ACK":
      return encodeTxACKPacket(b.msg);
    case "BYTES_MESSAGE":
      return encodeBytesMessage(b.msg);
    case "STRING_MESSAGE":
      return encodeStringMessage(b.msg);
  }
}
