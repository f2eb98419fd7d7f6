/**
 * The SDK's option and message types in an application's strictest tsconfig
 * (exactOptionalPropertyTypes): an optional option set from a value that may be undefined
 * (`secretKey: process.env.SECRET`, `properties: traceId ? { traceId } : undefined`) was a type
 * error ("Consider adding 'undefined' to the types of the target's properties"), although the SDK
 * treats undefined as absent. Checked with the TypeScript compiler on a file of such code.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import ts from "typescript";
import { expect, it } from "vitest";

const CLIENT = path.resolve(import.meta.dirname, "../../../src/client/index.js");

const APPLICATION = `
import { createConsumer, createProducer, type OutgoingMessage } from ${JSON.stringify(CLIENT)};
const secret: string | undefined = process.env.SECRET;
const timeout = process.env.SEND_TIMEOUT === undefined ? undefined : Number(process.env.SEND_TIMEOUT);
const producer = await createProducer({
  registry: "127.0.0.1:13800", groupId: "g", topics: ["t"], secretKey: secret, sendTimeoutMs: timeout, logger: undefined,
});
const traceId: string | undefined = process.env.TRACE;
const message: OutgoingMessage = {
  topic: "t", messageType: "m", body: "b", properties: traceId ? { traceId } : undefined, deliverAt: undefined,
};
await producer.send(message);
await createConsumer({
  registry: "127.0.0.1:13800", groupId: "g", secretKey: secret, concurrency: undefined, handler: undefined,
  bindings: [{ topic: "t", messageType: undefined, bindType: undefined, watermark: undefined }],
});
`;

it("options and messages with optional fields set to undefined compile under exactOptionalPropertyTypes", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "kiteq-types-"));
  try {
    const file = path.join(dir, "app.mts");
    writeFileSync(file, APPLICATION);
    const program = ts.createProgram([file], {
      strict: true,
      exactOptionalPropertyTypes: true,
      noEmit: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ["node"],
    });
    const errors = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file?.fileName === file)
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n").split("\n")[0]);
    expect(errors).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
