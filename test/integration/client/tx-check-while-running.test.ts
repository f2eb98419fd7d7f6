/**
 * A broker's check-back about a two-phase message whose local transaction is still running (it
 * takes longer than the broker's --tx-check-seconds). The SDK passed it to onTxCheck, which looks
 * for the transaction's rows, does not find them (not committed yet) and may well answer
 * "rollback": the broker rolled the message back, the commit that followed came too late, and
 * sendTx still resolved with outcome "commit" for a message never delivered. The SDK knows the
 * transaction runs: it answers "unknown" itself (the broker asks again later).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createProducer } from "../../../src/client/index.js";
import { CommandType } from "../../../src/protocol/commands.js";
import {
  decodeStringMessage,
  decodeTxACKPacket,
  encodeConnAuthAck,
  encodeMessageStoreAck,
  encodeTxACKPacket,
  TxStatus,
} from "../../../src/protocol/messages.js";
import { startScriptedBroker } from "../../support/fake-broker.js";

const CHECK_OPAQUE = 5_000;
/** The producer's TX_ACKs: the answer to the check (its opaque) and the verdict. */
const txAcks: { opaque: number; status: number }[] = [];
let broker: Awaited<ReturnType<typeof startScriptedBroker>>;
let address: string;

beforeAll(async () => {
  // Stores every publish at once, then checks back about an uncommitted one 100 ms later.
  broker = await startScriptedBroker((p, write) => {
    if (p.cmdType === CommandType.CONN_META) {
      write(p.opaque, CommandType.CONN_AUTH, encodeConnAuthAck({ status: true, feedback: "" }));
    } else if (p.cmdType === CommandType.STRING_MESSAGE) {
      const { header } = decodeStringMessage(p.body);
      write(
        p.opaque,
        CommandType.MESSAGE_STORE_ACK,
        encodeMessageStoreAck({ messageId: header.messageId, status: true, feedback: "" }),
      );
      if (!header.commit) {
        setTimeout(
          () =>
            write(
              CHECK_OPAQUE,
              CommandType.TX_ACK,
              encodeTxACKPacket({ header, status: TxStatus.UNKNOWN, feedback: "check" }),
            ),
          100,
        );
      }
    } else if (p.cmdType === CommandType.TX_ACK) {
      txAcks.push({ opaque: p.opaque, status: decodeTxACKPacket(p.body).status });
    }
  });
  address = broker.address;
});

afterAll(() => broker.close());

it("a check-back while the local transaction runs is answered unknown, without asking onTxCheck", async () => {
  const producer = await createProducer({ registry: address, groupId: "orders", topics: ["t"] });
  const asked: string[] = [];
  // A handler that answers from the database: the order's row is not there (not committed yet).
  producer.onTxCheck((header) => {
    asked.push(header.messageId);
    return "rollback";
  });
  const result = await producer.sendTx({ topic: "t", messageType: "order-created", body: "{}" }, async () => {
    await new Promise((r) => setTimeout(r, 500)); // the check-back comes meanwhile
    return "commit" as const;
  });
  expect(result.outcome).toBe("commit");
  await new Promise((r) => setTimeout(r, 100));
  expect(asked).toEqual([]);
  expect(txAcks.find((a) => a.opaque === CHECK_OPAQUE)?.status).toBe(TxStatus.UNKNOWN);
  // The verdict that followed: commit.
  expect(txAcks.filter((a) => a.opaque !== CHECK_OPAQUE).map((a) => a.status)).toEqual([TxStatus.COMMIT]);
  await producer.close();
});
