/**
 * Test consumers: connections that record what they receive and answer as told.
 */
import { KiteqConnection, type PushedMessage } from "../../src/client/connection.js";

export interface RecordingConsumer {
  conn: KiteqConnection;
  received: PushedMessage[];
  ids(): string[];
}

/**
 * Connect a consumer of `groupId`; `answer` decides each ack (default true): a promise answers
 * when it settles (a handler still running).
 */
export async function recordingConsumer(
  port: number,
  groupId: string,
  answer: (m: PushedMessage, n: number) => boolean | Promise<boolean> | "ignore" = () => true,
): Promise<RecordingConsumer> {
  const received: PushedMessage[] = [];
  // The handler goes in with connect(): the first push may come in the handshake reply's chunk.
  const conn = await KiteqConnection.connect({
    host: "127.0.0.1",
    port,
    groupId,
    heartbeatMs: 0,
    onMessage: (m) => {
      received.push(m);
      const a = answer(m, received.length);
      // "ignore": never answer (the broker must time the push out).
      return a === "ignore" ? new Promise<boolean>(() => undefined) : a;
    },
  });
  return { conn, received, ids: () => received.map((m) => m.header.messageId) };
}

/** Poll `cond` until true or `timeoutMs` passed (then throw with `what`). */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
