/**
 * A broker at its connection limits (--max-connections, --max-connections-per-address) closes a
 * new connection at once, before reading a byte (README, "Limits on what a client may send"). The
 * SDK said only "connection closed" (a producer: `no broker connected within 10000 ms: host:port
 * (connection closed)`); it now says the broker closed it before the handshake, and where to look.
 */
import net from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { KiteqConnection } from "../../../src/client/connection.js";
import { createProducer } from "../../../src/client/index.js";
import { ErrorCode } from "../../../src/errors.js";

let server: net.Server;
let port: number;

beforeAll(async () => {
  server = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

it("a connection closed before the handshake's answer says so, naming the address", async () => {
  const err = await KiteqConnection.connect({ host: "127.0.0.1", port, groupId: "g" }).catch(
    (e: unknown) => e,
  );
  expect(err).toMatchObject({ code: ErrorCode.ConnectionClosed });
  expect(String((err as Error).message)).toBe(
    `127.0.0.1:${port} closed the connection before answering the handshake ` +
      "(a broker at its connection limits closes new connections so: see its log)",
  );
});

it("a producer's KQ_NO_BROKER carries it", async () => {
  const err = await createProducer({
    registry: `127.0.0.1:${port}`,
    groupId: "p",
    topics: ["t"],
    connectTimeoutMs: 1_500,
  }).catch((e: unknown) => e);
  expect(err).toMatchObject({ code: ErrorCode.NoBroker });
  expect(String((err as Error).message)).toContain("closed the connection before answering the handshake");
});
