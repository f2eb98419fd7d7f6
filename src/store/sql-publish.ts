/**
 * Same-database transactional publish: the one statement that calls kiteq_publish (installed by
 * migrations/0005_publish_in_transaction.sql) on the caller's own connection, inside the
 * caller's transaction.
 */

/** What kiteq_publish takes, in its parameter order. */
export interface SqlPublishArgs {
  topic: string;
  messageType: string;
  body: Buffer;
  groupId: string;
  properties: Record<string, string> | null;
  messageId: string | null;
  expiresAt: Date | null;
  deliverLimit: number;
  deliverAt: Date | null;
  bodyIsString: boolean;
}

/** A connection able to run one parameterised statement (pg's Client, PoolClient or Pool). */
export interface SqlClient {
  query(text: string, values: unknown[]): Promise<{ rows: unknown[] }>;
}

const CALL_KITEQ_PUBLISH = `
SELECT message_id, duplicate, owed_groups
  FROM kiteq_publish($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)`;

/** Call kiteq_publish on `client` (see CALL_KITEQ_PUBLISH). */
export async function callKiteqPublish(
  client: SqlClient,
  a: SqlPublishArgs,
): Promise<{ messageId: string; duplicate: boolean; owedGroups: number }> {
  const { rows } = await client.query(CALL_KITEQ_PUBLISH, [
    a.topic,
    a.messageType,
    a.body,
    a.groupId,
    a.properties === null ? null : JSON.stringify(a.properties),
    a.messageId,
    a.expiresAt,
    a.deliverLimit,
    a.deliverAt,
    a.bodyIsString,
  ]);
  const row = rows[0] as { message_id: string; duplicate: boolean; owed_groups: number } | undefined;
  if (row === undefined) throw new Error("kiteq_publish returned no row");
  return { messageId: row.message_id, duplicate: row.duplicate, owedGroups: row.owed_groups };
}
