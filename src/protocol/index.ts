/**
 * The KiteQ wire protocol: framing, command codes and message codecs. Pure code, no I/O.
 */
export { type CommandBody, type CommandMessages, decodeBody, encodeBody } from "./body.js";
export {
  type CommandName,
  CommandType,
  commandName,
  isKnownCommand,
  ResponseStatus,
} from "./commands.js";
export {
  encodePacket,
  FrameDecoder,
  HEADER_LENGTH,
  MAX_BODY_LENGTH,
  MAX_PACKET_SIZE,
  type Packet,
  type PacketInit,
} from "./frame.js";
export {
  type BytesMessage,
  type ConnAuthAck,
  type ConnMeta,
  type DeliverAck,
  decodeBytesMessage,
  decodeConnAuthAck,
  decodeConnMeta,
  decodeDeliverAck,
  decodeEntry,
  decodeHeader,
  decodeHeartBeat,
  decodeMessageStoreAck,
  decodeStringMessage,
  decodeTxACKPacket,
  type Entry,
  encodeBytesMessage,
  encodeConnAuthAck,
  encodeConnMeta,
  encodeDeliverAck,
  encodeEntry,
  encodeHeader,
  encodeHeartBeat,
  encodeMessageStoreAck,
  encodeStringMessage,
  encodeTxACKPacket,
  type Header,
  type HeartBeat,
  type MessageStoreAck,
  type StringMessage,
  type TxACKPacket,
  TxStatus,
} from "./messages.js";
