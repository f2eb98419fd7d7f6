/**
 * `kiteq-pg/sql`: publish inside the application's own PostgreSQL transaction, for applications
 * that share kiteq-pg's database. The message (its row, its `received` history row and the
 * deliveries owed to every group bound by Direct or Fanout) is written by the kiteq_publish SQL
 * function on the caller's connection, so it exists, and is delivered, only if the caller's
 * transaction commits; groups bound by Regx are matched by a broker right after the commit.
 *
 *     await client.query("BEGIN");
 *     await client.query("INSERT INTO orders ...");
 *     await publishInTransaction(client, { topic: "trade", messageType: "order-created", body });
 *     await client.query("COMMIT");
 */
import { ErrorCode, KiteqError, toKiteqError } from "../errors.js";
import { callKiteqPublish, type SqlClient } from "../store/sql-publish.js";

export type { SqlClient } from "../store/sql-publish.js";

/** A message published from SQL. */
export interface SqlMessage {
  topic: string;
  messageType: string;
  /** A string is stored as a STRING_MESSAGE body, bytes as BYTES_MESSAGE. */
  body: string | Uint8Array;
  /** The publishing group recorded with the message (default "sql"). */
  groupId?: string;
  properties?: Readonly<Record<string, string>>;
  /** 32 hex characters of your own (idempotent: a second publish of it stores nothing); default fresh. */
  messageId?: string;
  /** Default and maximum: 7 days after the transaction's start. */
  expiresAt?: Date;
  /** 1..100 (default 100). */
  deliverLimit?: number;
  /** Deliver no earlier than this (stored as the `kiteq.deliverAt` property too). */
  deliverAt?: Date;
}

/** What publishInTransaction returns. */
export interface SqlPublishResult {
  messageId: string;
  /** The messageId was already stored: nothing was written. */
  duplicate: boolean;
  /**
   * Groups owed a delivery through a Direct or Fanout binding, written in this transaction. Groups
   * bound by Regx are matched by a broker right after the commit (Go's regexp syntax, which SQL
   * cannot read) and are not counted here.
   */
  owedGroups: number;
}

/**
 * Publish `message` on `client`, inside whatever transaction `client` has open (without one, the
 * statement is its own transaction). Refusals (bad id, expired, deliverAt after expiry) are
 * KiteqError(MessageInvalid) and, like any error, abort the caller's transaction.
 */
export async function publishInTransaction(
  client: SqlClient,
  message: SqlMessage,
): Promise<SqlPublishResult> {
  const isString = typeof message.body === "string";
  try {
    return await callKiteqPublish(client, {
      topic: message.topic,
      messageType: message.messageType,
      body: isString ? Buffer.from(message.body as string, "utf8") : Buffer.from(message.body as Uint8Array),
      groupId: message.groupId ?? "sql",
      properties: message.properties === undefined ? null : { ...message.properties },
      messageId: message.messageId ?? null,
      expiresAt: message.expiresAt ?? null,
      deliverLimit: message.deliverLimit ?? 100,
      deliverAt: message.deliverAt ?? null,
      bodyIsString: isString,
    });
  } catch (err) {
    const e = toKiteqError(err, { topic: message.topic, messageId: message.messageId });
    // SQLSTATE 22023 (invalid_parameter_value) is kiteq_publish's own refusal.
    const code = (err as { code?: unknown }).code === "22023" ? ErrorCode.MessageInvalid : e.code;
    throw new KiteqError(code, e.message, e.context, { cause: err });
  }
}
