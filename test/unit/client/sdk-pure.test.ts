/** Pure parts of the SDK: wire conversion, snappy, registry parsing, bindings. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { BindType } from "../../../src/binding/binding.js";
import { toBinding } from "../../../src/client/consumer.js";
import { createDirectory, parseZkRegistry } from "../../../src/client/directory.js";
import { DELIVER_AT_PROPERTY, fromWire, toWire } from "../../../src/client/message.js";
import { compressBody, decompressBody } from "../../../src/client/snappy.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";
import { silentLogger } from "../../../src/log.js";

describe("SDK wire conversion", () => {
  it("toWire: defaults, properties, deliverAt, expiredTime as Date", () => {
    const at = new Date("2030-01-01T00:00:00Z");
    const { header, body } = toWire(
      { topic: "t", messageType: "m", body: "hi", properties: { a: "1" }, deliverAt: at, expiredTime: at },
      "g",
      0,
    );
    expect(header.messageId).toMatch(/^[0-9a-f]{32}$/);
    expect(header.groupId).toBe("g");
    expect(header.commit).toBe(true);
    expect(header.snappy).toBe(false);
    expect(header.expiredTime).toBe(at.getTime() / 1000);
    expect(header.properties).toEqual([
      { key: "a", value: "1" },
      { key: DELIVER_AT_PROPERTY, value: String(at.getTime()) },
    ]);
    expect(body).toBe("hi");
  });

  it("toWire refuses a bad deliverAt with a typed error naming the field", () => {
    const err = (() => {
      try {
        toWire({ topic: "t", messageType: "m", body: "x", deliverAt: Number.NaN }, "g", 0);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(KiteqError);
    expect((err as KiteqError).code).toBe(ErrorCode.MessageInvalid);
    expect((err as KiteqError).context.key).toBe("deliverAt");
  });

  it("toWire refuses what the broker would refuse or silently change, naming the field", () => {
    const refused = (fields: Record<string, unknown>, key: string, text: RegExp) => {
      const m = { topic: "t", messageType: "m", body: "b", ...fields };
      let err: unknown;
      try {
        toWire(m as unknown as Parameters<typeof toWire>[0], "g", 0);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KiteqError);
      expect((err as KiteqError).code).toBe(ErrorCode.MessageInvalid);
      expect((err as KiteqError).context.key).toBe(key);
      expect((err as KiteqError).message).toMatch(text);
    };
    // Before: stored as 100, 100 and 1.
    refused({ deliverLimit: 0 }, "deliverLimit", /integer from 1 to 100, not 0/);
    refused({ deliverLimit: 1000 }, "deliverLimit", /not 1000/);
    refused({ deliverLimit: 1.5 }, "deliverLimit", /not 1.5/);
    // Before: U+FFFD on the broker.
    refused({ messageType: "a\uD800b" }, "messageType", /lone UTF-16 surrogate/);
    refused({ properties: { k: "\uDC00" } }, 'properties["k"]', /lone UTF-16 surrogate/);
    // Before: delivered at once / kept 7 days.
    refused({ deliverAt: Math.floor(Date.now() / 1000) + 60 }, "deliverAt", /looks like unix seconds/);
    refused({ expiredTime: Date.now() + 60_000 }, "expiredTime", /looks like unix milliseconds/);
    refused({ expiredTime: new Date(Number.NaN) }, "expiredTime", /invalid Date/);
    // Before: a raw TypeError.
    refused({ body: undefined }, "body", /string or bytes .* not undefined/);
    refused({ topic: 7 }, "topic", /must be a string, not 7/);
    refused({ messageId: 7 }, "messageId", /32 hexadecimal characters, not 7/);
    // Before: sent, and refused by the broker only.
    refused({ messageId: "not-hex" }, "messageId", /32 hexadecimal characters, not "not-hex"/);
    refused({ messageType: "" }, "messageType", /messageType must not be empty/);
    refused({ topic: "" }, "topic", /topic must not be empty/);
    // Still accepted: a pair, -1 (KiteQ's default expiry), a past deliverAt, 1 and 100.
    for (const fields of [
      { messageType: "a\uD83D\uDE00b" },
      { expiredTime: -1 },
      { deliverAt: Date.now() - 1_000 },
      { deliverLimit: 1 },
      { deliverLimit: 100 },
      { messageId: "0123456789ABCDEF0123456789abcdef" },
    ]) {
      expect(() => toWire({ topic: "t", messageType: "m", body: "b", ...fields }, "g", 0)).not.toThrow();
    }
  });

  it("snappy both ways: strings as base64, bytes as bytes; compressed at the threshold only", () => {
    const text = "abc".repeat(1000);
    const small = toWire({ topic: "t", messageType: "m", body: "short" }, "g", 100);
    expect(small.header.snappy).toBe(false);
    const big = toWire({ topic: "t", messageType: "m", body: text }, "g", 100);
    expect(big.header.snappy).toBe(true);
    expect(typeof big.body).toBe("string");
    expect((big.body as string).length).toBeLessThan(text.length);
    let answered: boolean | undefined;
    const m = fromWire(big.header, big.body, (ok) => {
      answered = ok;
    });
    expect(m.text()).toBe(text);
    m.nack();
    expect(answered).toBe(false);
    const bytes = Buffer.alloc(4096, 1);
    expect(Buffer.compare(decompressBody(compressBody(bytes)) as Buffer, bytes)).toBe(0);
    expect(() => decompressBody(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1]))).toThrow(KiteqError);
  });
});

describe("SDK registry and bindings", () => {
  it("parses zk:// with a session timeout", () => {
    expect(parseZkRegistry("zk://127.0.0.1:2181,h2:2182?timeout=4s")).toEqual({
      connectString: "127.0.0.1:2181,h2:2182",
      sessionTimeoutMs: 4000,
    });
    expect(parseZkRegistry("zk://h?sessionTimeout=500ms").sessionTimeoutMs).toBe(500);
    expect(() => parseZkRegistry("zk://h?bogus=1")).toThrow(KiteqError);
  });

  it("an address list serves every topic; a bad address is ConfigInvalid", async () => {
    const d = createDirectory(["127.0.0.1:13800", "127.0.0.1:13801"], silentLogger);
    let seen: ReadonlyMap<string, readonly string[]> | undefined;
    await d.start(["a", "b"], (m) => {
      seen = m;
    });
    expect(seen?.get("b")).toEqual(["127.0.0.1:13800", "127.0.0.1:13801"]);
    expect(() => createDirectory("nonsense", silentLogger)).toThrow(KiteqError);
  });

  it("a mistyped registry says what registry takes, and a mistyped zk:// what was meant", () => {
    // Before: only `registry: "zk//127.0.0.1:2181" is not host:port`.
    const message = (spec: string): string => {
      try {
        createDirectory(spec, silentLogger);
      } catch (err) {
        expect(err).toMatchObject({ code: ErrorCode.ConfigInvalid, context: { key: "registry" } });
        return (err as Error).message;
      }
      throw new Error(`${spec} was accepted`);
    };
    const forms =
      '(registry is "zk://host:port[,host:port]", a registry YAML file (*.yaml, *.yml or file://path), or broker addresses "host:port[,host:port]")';
    for (const typo of ["zk//127.0.0.1:2181", "zk:/127.0.0.1:2181", "ZK://127.0.0.1:2181"]) {
      expect(message(typo)).toBe(
        `registry: "${typo}" is not host:port; did you mean "zk://127.0.0.1:2181"? ${forms}`,
      );
    }
    expect(message("registry.yamll")).toBe(`registry: "registry.yamll" is not host:port ${forms}`);
    // In an array (for addresses): the hint above would have suggested the same URL.
    const inArray = (spec: string): string => {
      try {
        createDirectory([spec], silentLogger);
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error(`[${spec}] was accepted`);
    };
    for (const spec of ["zk://127.0.0.1:2181", "registry.yaml"]) {
      expect(inArray(spec)).toBe(
        `registry: "${spec}" is not host:port; a ZooKeeper URL or a registry file is the registry string itself, not an element of an array ${forms}`,
      );
    }
  });

  it("a KiteQ registry YAML file: each topic's brokers are those listing it", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "kiteq-sdk-"));
    try {
      const file = path.join(dir, "registry.yaml");
      await writeFile(
        file,
        [
          "brokers:",
          '  - address: "127.0.0.1:13800"',
          '    topics: ["trade", "user"]',
          '  - address: "127.0.0.1:13801"',
          '    topics: ["trade"]',
          "",
        ].join("\n"),
      );
      let seen: ReadonlyMap<string, readonly string[]> | undefined;
      await createDirectory(file, silentLogger).start(["trade", "user"], (m) => {
        seen = m;
      });
      expect(seen?.get("trade")).toEqual(["127.0.0.1:13800", "127.0.0.1:13801"]);
      expect(seen?.get("user")).toEqual(["127.0.0.1:13800"]);
      await createDirectory(`file://${file}`, silentLogger).start([], (m) => {
        seen = m;
      });
      expect(seen?.get("")).toEqual(["127.0.0.1:13800", "127.0.0.1:13801"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a registry YAML file that gives a topic no broker is refused at once, naming file, topic and brokers", async () => {
    // Before: createProducer waited connectTimeoutMs (10 s) for a file read once, then said only
    // "the registry names no broker for these topics".
    const dir = await mkdtemp(path.join(os.tmpdir(), "kiteq-sdk-"));
    try {
      const file = path.join(dir, "registry.yaml");
      // `topic:` for `topics:`: the broker lists no topics.
      await writeFile(
        file,
        ["brokers:", '  - address: "127.0.0.1:13800"', '    topic: ["trade"]', ""].join("\n"),
      );
      const err = await createDirectory(file, silentLogger)
        .start(["trade"], () => undefined)
        .catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: ErrorCode.ConfigInvalid,
        context: { key: "registry", topic: "trade" },
      });
      expect((err as Error).message).toBe(
        `registry file ${file} lists no broker for topic "trade": add it to a broker's topics (its brokers: 127.0.0.1:13800 (no topics))`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("binding specs become KiteQ bindings", () => {
    expect(toBinding("g", { topic: "t" })).toMatchObject({
      bindType: BindType.Fanout,
      messageType: "*",
      persistent: true,
      watermark: 6000,
    });
    expect(toBinding("g", { topic: "t", messageType: "pay" }).bindType).toBe(BindType.Direct);
    expect(toBinding("g", { topic: "t", messageType: "pay-.*", bindType: "regx" }).bindType).toBe(
      BindType.Regx,
    );
  });
});
