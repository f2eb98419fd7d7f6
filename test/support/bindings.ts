/** Bind a group in a test database, as `kiteq-pg bind add` would. */
import type pg from "pg";
import { type BindingInput, createBinding } from "../../src/binding/binding.js";
import { upsertBinding } from "../../src/store/bindings.js";

/** Upsert one binding: Direct, watermark 6,000 and persistent unless `input` says otherwise. */
export async function bind(
  pool: pg.Pool,
  input: Omit<BindingInput, "bindType"> & Partial<Pick<BindingInput, "bindType">>,
): Promise<void> {
  await upsertBinding(
    pool,
    createBinding({ bindType: 0, watermark: 6000, persistent: true, ...input }),
    "cli",
    new Date(),
  );
}

/**
 * A row no broker would write (Go refuses the pattern), as a hand edit of the table makes one:
 * every entry point checks bindings, so only this way is there one to test with.
 */
export async function insertInvalidRegxBinding(
  pool: pg.Pool,
  groupId: string,
  topic: string,
  pattern = "(unclosed",
): Promise<void> {
  await pool.query(
    `INSERT INTO bindings (group_id, topic, message_type, bind_type, version, watermark, persistent, source)
     VALUES ($1, $2, $3, 1, '', 1000, true, 'cli')`,
    [groupId, topic, pattern],
  );
}
