/**
 * The SDK's KQ_BINDINGS_NOT_APPLIED warning: bindings travel through ZooKeeper only, so with
 * broker addresses or a YAML registry a consumer's bindings are the broker's to apply. With a
 * YAML registry the brokers apply the file's bindings: the warning is for bindings the file does
 * not hold (before, it was said for every group, bound in the file or not: 200 lines for 200
 * groups all bound there).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Consumer, createConsumer } from "../../../src/client/index.js";
import { type FakeBroker, startFakeBroker } from "../../support/fake-broker.js";

let broker: FakeBroker;
let dir: string;
let file: string;
const warnings: string[] = [];
const onWarning = (w: Error & { code?: string }) => {
  if (w.code === "KQ_BINDINGS_NOT_APPLIED") warnings.push(w.message);
};

beforeAll(async () => {
  broker = await startFakeBroker();
  dir = await mkdtemp(path.join(tmpdir(), "kiteq-bindings-warning-"));
  file = path.join(dir, "registry.yaml");
  await writeFile(
    file,
    [
      "brokers:",
      `  - address: "${broker.address}"`,
      '    topics: ["trade"]',
      "bindings:",
      '  - groupIds: ["in-file", "other"]',
      "    topic: trade",
      "    bindType: fanout",
      '  - groupIds: ["direct-in-file"]',
      "    topic: trade",
      "    messageType: pay",
      "    bindType: direct",
      "",
    ].join("\n"),
  );
  process.on("warning", onWarning);
});

afterAll(async () => {
  process.off("warning", onWarning);
  broker?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function consume(
  registry: string,
  groupId: string,
  bindings: { topic: string; messageType?: string }[],
): Promise<void> {
  const c: Consumer = await createConsumer({ registry, groupId, bindings, handler: () => true });
  await c.close();
  // Process warnings are emitted on the next tick.
  await new Promise((r) => setImmediate(r));
}

it("a YAML registry that holds the consumer's bindings: no warning", async () => {
  await consume(file, "in-file", [{ topic: "trade" }]);
  await consume(`file://${file}`, "direct-in-file", [{ topic: "trade", messageType: "pay" }]);
  expect(warnings).toEqual([]);
});

it("bindings the YAML registry does not hold: one warning naming the file and the entry to add", async () => {
  await consume(file, "not-in-file", [{ topic: "trade" }]);
  // In the file, but for another messageType.
  await consume(file, "direct-in-file", [{ topic: "trade", messageType: "refund" }]);
  expect(warnings).toHaveLength(2);
  expect(warnings[0]).toContain(`not in ${file}`);
  expect(warnings[0]).toContain('{ groupIds: ["not-in-file"], topic: trade, bindType: fanout }');
  expect(warnings[1]).toContain(
    `{ groupIds: ["direct-in-file"], topic: trade, messageType: 'refund', bindType: direct }`,
  );
  warnings.length = 0;
});

it("broker addresses: the warning says to bind the group on the broker", async () => {
  await consume(broker.address, "by-address", [{ topic: "trade" }]);
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toContain("kiteq-pg bind add --group by-address --topic trade --type fanout");
});
