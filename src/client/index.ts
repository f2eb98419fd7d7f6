/**
 * `kiteq-pg-client` (and the broker package's `kiteq-pg/client`): the TypeScript SDK of kiteq-pg
 * (and of any KiteQ broker). packages/client packs these modules on their own.
 *
 *     const producer = await createProducer({ registry, groupId, topics });
 *     await producer.send({ topic, messageType, body });
 *     const consumer = await createConsumer({ registry, groupId, bindings, handler });
 */
export type { Binding } from "../binding/binding.js";
export { ErrorCode, KiteqError } from "../errors.js";
export type { Entry, Header } from "../protocol/messages.js";
export type { PushedMessage } from "./connection.js";
export { KiteqConnection, newMessageId } from "./connection.js";
export {
  type BindingSpec,
  type Consumer,
  type ConsumerOptions,
  createConsumer,
  type MessageHandler,
  toBinding,
} from "./consumer.js";
export type { RegistrySpec } from "./directory.js";
export {
  type ConsumedMessage,
  DELIVER_AT_PROPERTY,
  type OutgoingMessage,
  type SendResult,
} from "./message.js";
export {
  createProducer,
  type Producer,
  type ProducerOptions,
  type TxCheckAnswer,
  type TxOutcome,
} from "./producer.js";
