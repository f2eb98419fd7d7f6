/**
 * Brokers that check secrets (KITEQ_SECRETS) refuse a handshake with a wrong or missing
 * secretKey. createProducer/createConsumer said so as KQ_NO_BROKER after connectTimeoutMs (10 s
 * by default); a refused handshake will not pass on a retry, so it is KQ_AUTH_REFUSED at once.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createConsumer, createProducer } from "../../../src/client/index.js";
import { ErrorCode } from "../../../src/errors.js";
import { CommandType } from "../../../src/protocol/commands.js";
import { encodePacket } from "../../../src/protocol/frame.js";
import { encodeConnAuthAck } from "../../../src/protocol/messages.js";
import { startScriptedBroker } from "../../support/fake-broker.js";

const REFUSAL = "authentication failed: unknown group or wrong secret";
let broker: Awaited<ReturnType<typeof startScriptedBroker>>;
let address: string;

beforeAll(async () => {
  // Answers every handshake as kiteq-pg does with a wrong secret: status false, then closes.
  broker = await startScriptedBroker((p, _write, socket) => {
    if (p.cmdType !== CommandType.CONN_META) return;
    socket.end(
      encodePacket({
        opaque: p.opaque,
        cmdType: CommandType.CONN_AUTH,
        body: encodeConnAuthAck({ status: false, feedback: REFUSAL }),
      }),
    );
  });
  address = broker.address;
});

afterAll(() => broker.close());

it.each(["producer", "consumer"] as const)(
  "a %s whose handshake every broker refuses: KQ_AUTH_REFUSED at once",
  async (role) => {
    const started = Date.now();
    const options = { registry: address, groupId: "shop", secretKey: "wrong", connectTimeoutMs: 5_000 };
    const err = await (role === "producer"
      ? createProducer({ ...options, topics: ["t"] })
      : createConsumer({ ...options, bindings: [], handler: () => true })
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.AuthRefused, context: { key: "secretKey" } });
    expect((err as Error).message).toBe(
      `every broker refused the handshake of group "shop": ${address} (handshake refused: ${REFUSAL}); check groupId and secretKey`,
    );
    expect(Date.now() - started).toBeLessThan(1_500);
  },
);
