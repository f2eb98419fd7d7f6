/**
 * `kiteq-pg send` and `kiteq-pg consume`: a producer and a consumer over the KiteQ protocol
 * (src/client), against a running broker (--host/--port, default the configured bind address).
 */
import { buildHeader, KiteqConnection, type PushedMessage } from "../client/connection.js";
import type { BrokerConfig } from "../config/types.js";
import type { CommandArgs } from "./args.js";
import type { Command } from "./command.js";

/** Publishes in flight at once by `send`. */
const SEND_WINDOW = 64;
/** How long `consume` lets its last acks leave before closing the connection. */
const ACK_FLUSH_MS = 200;

function brokerAddress(config: BrokerConfig, args: CommandArgs): { host: string; port: number } {
  const wildcard = config.bind.host === "0.0.0.0" || config.bind.host === "::";
  return {
    host: args.optional("host") ?? (wildcard ? "127.0.0.1" : config.bind.host),
    port: args.int("port", config.bind.port, 1, 65535),
  };
}

/** `send`: publish N messages and print each store ack. */
export const sendCommand: Command = {
  name: "send",
  summary: "publish messages to a broker and print the store acks",
  usage: [
    "send --topic T --message-type M --group G [--body TEXT] [--count N] [--host H] [--port P] [--json]",
    "  G is the producer group; the body defaults to 'kiteq-pg send #i'; --count defaults to 1",
  ],
  flags: ["topic", "message-type", "group", "body", "count", "host", "port", "json"],
  async run({ config, args, out }) {
    const topic = args.required("topic");
    const messageType = args.required("message-type");
    const groupId = args.required("group");
    const body = args.optional("body");
    const count = args.int("count", 1, 1);
    const json = args.has("json");
    const { host, port } = brokerAddress(config, args);
    const conn = await KiteqConnection.connect({ host, port, groupId, heartbeatMs: 0 });
    let refused = 0;
    try {
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const i = ++next;
          const header = buildHeader({ topic, messageType, groupId });
          const ack = await conn.publish(header, body ?? `kiteq-pg send #${i}`);
          if (!ack.status) refused++;
          out.out(
            json
              ? JSON.stringify({ messageId: ack.messageId, status: ack.status, feedback: ack.feedback })
              : `${ack.messageId}  ${ack.status ? "stored " : "REFUSED"}  ${ack.feedback}`,
          );
        }
      };
      await Promise.all(Array.from({ length: Math.min(SEND_WINDOW, count) }, worker));
    } finally {
      conn.close();
    }
    if (refused > 0) out.err(`kiteq-pg: ${refused} of ${count} message(s) refused`);
    return refused > 0 ? 1 : 0;
  },
};

function bodyText(m: PushedMessage): string {
  return typeof m.body === "string" ? m.body : m.body.toString("utf8");
}

/** `consume`: receive as a consumer of a group, print each message, ack true. */
export const consumeCommand: Command = {
  name: "consume",
  summary: "receive messages as a consumer of a group, print them, ack true",
  usage: [
    "consume --group G [--count N] [--timeout SECONDS] [--host H] [--port P] [--json]",
    "  stops after N messages (default: on Ctrl-C); --timeout: exit 1 if N did not arrive in time",
  ],
  flags: ["group", "count", "timeout", "host", "port", "json"],
  async run({ config, args, out }) {
    const groupId = args.required("group");
    const count = args.has("count") ? args.int("count", 1, 1) : Number.POSITIVE_INFINITY;
    const timeoutSec = args.int("timeout", 0, 0);
    const json = args.has("json");
    const { host, port } = brokerAddress(config, args);
    const conn = await KiteqConnection.connect({ host, port, groupId, heartbeatMs: 5000 });
    let received = 0;
    const code = await new Promise<number>((resolve) => {
      let done = false;
      const finish = (c: number) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        resolve(c);
      };
      const onSignal = () => finish(0);
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      const timer =
        timeoutSec > 0
          ? setTimeout(() => {
              out.err(`kiteq-pg: received ${received} of ${count} message(s) within ${timeoutSec} s`);
              finish(1);
            }, timeoutSec * 1000)
          : undefined;
      conn.onClose(() => {
        if (done) return;
        out.err("kiteq-pg: connection to the broker closed");
        finish(1);
      });
      conn.onMessage((m) => {
        // Pushed after the last wanted one: refuse it, so the broker redelivers it to someone else.
        if (done || received >= count) return false;
        received++;
        const h = m.header;
        out.out(
          json
            ? JSON.stringify({ ...h, body: bodyText(m), isString: m.isString })
            : `${h.messageId}  ${h.topic}  ${h.messageType}  ${JSON.stringify(bodyText(m))}`,
        );
        if (received >= count) setTimeout(() => finish(0), ACK_FLUSH_MS);
        return true;
      });
    });
    conn.close();
    return code;
  },
};
