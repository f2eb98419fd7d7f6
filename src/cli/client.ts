/**
 * `kiteq-pg send` and `kiteq-pg consume`, on the SDK (`kiteq-pg/client`): brokers found through
 * the configured registry (`--registry zk://...`: ZooKeeper, as KiteQ clients do), or the
 * addresses given by `--brokers h:p,h:p`, else `--host/--port` (default the configured bind
 * address). Long runs show progress on stderr when it is a terminal.
 */
import type { Binding } from "../binding/binding.js";
import type { ConsumedMessage } from "../client/message.js";
import type { BrokerConfig } from "../config/types.js";
import { KiteqError } from "../errors.js";
import { findAdminApi } from "./admin-client.js";
import type { CommandArgs } from "./args.js";
import { UsageError } from "./args.js";
import type { Command, CommandContext } from "./command.js";

/** Publishes in flight at once by `send`. */
const SEND_WINDOW = 64;
/** Progress line refresh on a terminal. */
const PROGRESS_MS = 500;

/** The SDK registry: `--brokers`, else ZooKeeper when configured, else `--host/--port`. */
function registryOf(config: BrokerConfig, args: CommandArgs): { registry: string | string[]; zk: boolean } {
  const brokers = args.optional("brokers");
  if (brokers !== undefined) return { registry: brokers.split(",").map((b) => b.trim()), zk: false };
  if (config.registry.kind === "zookeeper" && !args.has("host") && !args.has("port")) {
    return {
      registry: `zk://${config.registry.hosts.join(",")}?timeout=${config.registry.sessionTimeoutMs}ms`,
      zk: true,
    };
  }
  const wildcard = config.bind.host === "0.0.0.0" || config.bind.host === "::";
  const host = args.optional("host") ?? (wildcard ? "127.0.0.1" : config.bind.host);
  const port = args.int("port", config.bind.port, 1, 65535);
  return { registry: [`${host.includes(":") ? `[${host}]` : host}:${port}`], zk: false };
}

/** A progress line on stderr, only when it is a terminal. */
function progress(label: () => string): { stop(): void } {
  if (!process.stderr.isTTY) return { stop: () => undefined };
  const timer = setInterval(() => process.stderr.write(`\r${label()}\u001b[K`), PROGRESS_MS);
  return {
    stop() {
      clearInterval(timer);
      process.stderr.write(`\r${label()}\u001b[K\n`);
    },
  };
}

/** `send`: publish N messages and print each store ack. */
export const sendCommand: Command = {
  name: "send",
  summary: "publish messages through the SDK and print the store acks",
  usage: [
    "send --topic T --message-type M --group G [--body TEXT] [--count N] [--rate N] [--deliver-in SECONDS]",
    "     [--brokers H:P,H:P | --host H --port P | --registry zk://H:P] [--json]",
    "  G is the producer group; the body defaults to 'kiteq-pg send #i'; --count defaults to 1;",
    "  --rate: at most N messages a second (default: as fast as the broker stores them)",
  ],
  flags: [
    "topic",
    "message-type",
    "group",
    "body",
    "count",
    "rate",
    "host",
    "port",
    "brokers",
    "deliver-in",
    "json",
  ],
  async run({ config, args, out }) {
    const topic = args.required("topic");
    const messageType = args.required("message-type");
    const groupId = args.required("group");
    const body = args.optional("body");
    const count = args.int("count", 1, 1);
    // 0: unpaced (SEND_WINDOW in flight). A load test that should not take a whole broker (a
    // walkthrough sent 3 million flat out by mistake) gives a rate.
    const rate = args.int("rate", 0, 0, 1_000_000);
    const deliverIn = args.int("deliver-in", 0, 0, 7 * 86_400);
    const json = args.has("json");
    const { registry } = registryOf(config, args);
    // Loaded here: the SDK (protobufjs, ZooKeeper) is not needed by the other commands.
    const { createProducer } = await import("../client/producer.js");
    const producer = await createProducer({ registry, groupId, topics: [topic] });
    let refused = 0;
    let done = 0;
    const started = Date.now();
    const bar = progress(
      () => `send: ${done}/${count} (${Math.round((done * 1000) / (Date.now() - started + 1))}/s)`,
    );
    try {
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const i = ++next;
          if (rate > 0) {
            const due = started + ((i - 1) * 1000) / rate;
            if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
          }
          let line: { messageId: string; status: boolean; feedback: string };
          try {
            const r = await producer.send({
              topic,
              messageType,
              body: body ?? `kiteq-pg send #${i}`,
              deliverAt: deliverIn > 0 ? Date.now() + deliverIn * 1000 : undefined,
            });
            line = { messageId: r.messageId, status: true, feedback: "" };
          } catch (err) {
            refused++;
            const e = err instanceof KiteqError ? err : undefined;
            line = {
              messageId: e?.context.messageId ?? "-",
              status: false,
              feedback: e?.describe() ?? String(err),
            };
          }
          done++;
          out.out(
            json
              ? JSON.stringify(line)
              : `${line.messageId}  ${line.status ? "stored" : `REFUSED  ${line.feedback}`}`,
          );
        }
      };
      await Promise.all(Array.from({ length: Math.min(SEND_WINDOW, count) }, worker));
    } finally {
      bar.stop();
      await producer.close();
    }
    if (refused > 0) out.err(`kiteq-pg: ${refused} of ${count} message(s) refused`);
    return refused > 0 ? 1 : 0;
  },
};

function bodyText(m: ConsumedMessage): string {
  return m.text();
}

/** The `bind add` that binds `groupId` (with the topic and type given, else placeholders). */
function bindCommand(groupId: string, topic: string | undefined, messageType: string | undefined): string {
  return `kiteq-pg bind add --group ${groupId} --topic ${topic ?? "T"} ${messageType === undefined ? (topic === undefined ? "--message-type M" : "--type fanout") : `--message-type ${messageType}`}`;
}

/**
 * Why a consume with static brokers received nothing, when the broker's admin API shows it
 * cheaply: the group has no binding there. Undefined when it has one or nobody can tell (no
 * admin API answering: the embedded store is not opened for a hint).
 */
async function unboundGroupNote(
  ctx: Pick<CommandContext, "config">,
  groupId: string,
  topic: string | undefined,
  messageType: string | undefined,
): Promise<string | undefined> {
  const found = await findAdminApi(ctx);
  if (found.api === null) return undefined;
  const bindings = (await found.api.get<Binding[]>("/api/bindings")) ?? [];
  if (bindings.some((b) => b.groupId === groupId)) return undefined;
  return `kiteq-pg: group ${groupId} has no bindings (the broker at ${found.api.base} lists none), so no message is pushed to it: bind it with ${bindCommand(groupId, topic, messageType)}`;
}

/** `consume`: receive as a consumer of a group, print each message, ack true. */
export const consumeCommand: Command = {
  name: "consume",
  summary: "receive messages through the SDK as a consumer of a group, print them, ack true",
  usage: [
    "consume --group G [--topic T [--message-type M]] [--count N] [--timeout SECONDS]",
    "        [--brokers H:P,H:P | --host H --port P | --registry zk://H:P] [--json]",
    "  stops after N messages (default: on Ctrl-C); --timeout: exit 1 if N did not arrive in time;",
    "  a broker pushes a backlog faster than N: what it pushed beyond N is answered false and",
    "  redelivered, each push one attempt toward the deliver limit (explain/history only look);",
    "  --topic binds the group with ZooKeeper (required there: the binding is published); with",
    "  --brokers/--host it binds nothing (the broker's own bindings apply: kiteq-pg bind add);",
    "  --json prints one JSON object per message (a JSON line)",
  ],
  flags: ["group", "topic", "message-type", "count", "timeout", "host", "port", "brokers", "json"],
  async run({ config, args, out }) {
    const groupId = args.required("group");
    const topic = args.optional("topic");
    const messageType = args.optional("message-type");
    const count = args.has("count") ? args.int("count", 1, 1) : Number.POSITIVE_INFINITY;
    const timeoutSec = args.int("timeout", 0, 0);
    const json = args.has("json");
    const { registry, zk } = registryOf(config, args);
    if (zk && topic === undefined)
      throw new UsageError("consume: --topic is required with a ZooKeeper registry");
    if (!zk && topic !== undefined) {
      // One line instead of the SDK's KQ_BINDINGS_NOT_APPLIED process warning (bindings are not
      // passed on below): the binding lives on the broker with static brokers.
      out.err(
        `kiteq-pg: --topic binds nothing with --brokers/--host (the broker's own bindings apply): to bind group ${groupId}, run ${bindCommand(groupId, topic, messageType)}`,
      );
    }
    let received = 0;
    let finish: (code: number) => void = () => undefined;
    const finished = new Promise<number>((resolve) => {
      finish = resolve;
    });
    let done = false;
    const { createConsumer } = await import("../client/consumer.js");
    const consumer = await createConsumer({
      registry,
      groupId,
      bindings: zk && topic !== undefined ? [{ topic, messageType }] : [],
      concurrency: 1,
      handler: (m) => {
        // Pushed after the last wanted one: refuse it, so the broker redelivers it to someone else.
        if (done || received >= count) return false;
        received++;
        const h = m.header;
        out.out(
          json
            ? JSON.stringify({ ...h, body: bodyText(m), isString: typeof m.body === "string" })
            : `${h.messageId}  ${h.topic}  ${h.messageType}  ${JSON.stringify(bodyText(m))}`,
        );
        if (received >= count) finish(0);
        return true;
      },
    });
    const started = Date.now();
    const bar = progress(
      () => `consume: ${received} received (${Math.round((received * 1000) / (Date.now() - started + 1))}/s)`,
    );
    const onSignal = () => finish(0);
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    const timer =
      timeoutSec > 0
        ? setTimeout(() => {
            done = true;
            out.err(`kiteq-pg: received ${received} of ${count} message(s) within ${timeoutSec} s`);
            if (received > 0 || zk) {
              finish(1);
              return;
            }
            // With ZooKeeper --topic bound the group; with static brokers an unbound group
            // receives nothing in silence.
            unboundGroupNote({ config }, groupId, topic, messageType).then(
              (note) => {
                if (note !== undefined) out.err(note);
                finish(1);
              },
              () => finish(1),
            );
          }, timeoutSec * 1000)
        : undefined;
    const code = await finished;
    done = true;
    clearTimeout(timer);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    bar.stop();
    // close() lets the last handlers' acks leave before disconnecting.
    await consumer.close();
    return code;
  },
};
