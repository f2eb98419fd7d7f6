/**
 * A consumer's DELIVER_ACK feedback as the history stores it (the nack row's detail). It is
 * client text: a NUL byte (PostgreSQL text cannot hold one) failed the statement that wrote the
 * whole batch of nacks, so every nack in it was lost again and again; a megabyte of it went
 * into every nack row. Made storable and cut, never refused: the nack itself always counts.
 */
import { LONE_SURROGATE } from "../publish/validate.js";

/** Most characters of feedback kept. */
export const MAX_FEEDBACK_CHARS = 1000;

/** Every lone surrogate (the publish check's pattern, global). */
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, "g");

/** `feedback` made storable (NUL as \x00, lone surrogates replaced) and cut to MAX_FEEDBACK_CHARS. */
export function storableFeedback(feedback: string): string {
  const cut = feedback.length > MAX_FEEDBACK_CHARS;
  const clean = (cut ? feedback.slice(0, MAX_FEEDBACK_CHARS) : feedback)
    .replaceAll("\u0000", "\\x00")
    .replace(LONE_SURROGATES, "\ufffd");
  return cut ? `${clean}… (cut: ${feedback.length} characters)` : clean;
}
