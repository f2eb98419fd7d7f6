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
