import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType, bindingsToJson } from "../../../src/binding/binding.js";
import { loadRegistryFile, parseRegistryFile } from "../../../src/binding/registry-file.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";

const EXAMPLE = `
brokers:
  - address: "127.0.0.1:13800"
    topics: ["trade", "user"]
    env: dev
bindings:
  - groupIds: ["s-mts-test", "s-other"]
    topic: trade
    messageType: pay-succ
    bindType: direct        # direct | regx | fanout (also accept 0/1/2)
    watermark: 1000
    persistent: true
`;

function failure(text: string): KiteqError {
  try {
    parseRegistryFile(text);
  } catch (err) {
    expect(err).toBeInstanceOf(KiteqError);
    return err as KiteqError;
  }
  throw new Error("expected the registry file to be refused");
}

describe("registry file", () => {
  it("parses KiteQ's format, one binding per groupId, with KiteQ's version", () => {
    const reg = parseRegistryFile(EXAMPLE);
    expect(reg.brokers).toEqual([{ address: "127.0.0.1:13800", topics: ["trade", "user"], env: "dev" }]);
    expect(bindingsToJson(reg.bindings)).toBe(
      '[{"groupId":"s-mts-test","topic":"trade","messageType":"pay-succ","bindType":0,"version":"1.0.0","watermark":1000,"persistent":true},' +
        '{"groupId":"s-other","topic":"trade","messageType":"pay-succ","bindType":0,"version":"1.0.0","watermark":1000,"persistent":true}]',
    );
  });

  it("parses KiteQ's own demo file", () => {
    const reg = parseRegistryFile(`brokers:
      - address: "localhost:13700"  #server address
        topics: [ "relation","message","user-profile" ]
        env: "dev"
      - address: "localhost:13800"
        topics: [ "relation","message","user-profile" ]
        env: "pre"
bindings:
    - groupIds: [ "s-user-profile" ]
      topic: "user-profile"
      messageType: "profile-update"
      bindType: "direct"
      watermark: 1000
      persistent: true
`);
    expect(reg.brokers.map((b) => b.env)).toEqual(["dev", "pre"]);
    expect(reg.bindings).toHaveLength(1);
    expect(reg.bindings[0]).toMatchObject({
      groupId: "s-user-profile",
      topic: "user-profile",
      watermark: 1000,
    });
  });

  it("accepts bind type names in any case and the numbers 0/1/2", () => {
    const reg = parseRegistryFile(`
bindings:
  - {groupIds: [a], topic: t, messageType: "^x", bindType: REGX}
  - {groupIds: [b], topic: t, messageType: m, bindType: 0}
  - {groupIds: [c], topic: t, bindType: 2}
  - {groupIds: [d], topic: t, bindType: Fanout}
  - {groupIds: [e], topic: t, messageType: m}
`);
    expect(reg.bindings.map((b) => b.bindType)).toEqual([
      BindType.Regx,
      BindType.Direct,
      BindType.Fanout,
      BindType.Fanout,
      BindType.Direct, // missing: direct, like KiteQ
    ]);
    expect(reg.bindings[2]?.messageType).toBe("*");
  });

  it("is lenient about hand-written shapes", () => {
    const reg = parseRegistryFile(`
brokers:
  - address: "[::1]:13800"
    topics: trade
    env: 1
  - address: host:1
bindings:
  - groupId: single
    topic: trade
    messageType: m
    watermark: "200"
    persistent: "yes"
  - groupIds: [dup, dup]
    topic: trade
    messageType: m
    persistent: off
`);
    expect(reg.brokers).toEqual([
      { address: "[::1]:13800", topics: ["trade"], env: "1" },
      { address: "host:1", topics: [] },
    ]);
    expect(reg.bindings.map((b) => [b.groupId, b.watermark, b.persistent])).toEqual([
      ["single", 200, true],
      ["dup", 6000, false],
    ]);
  });

  it("treats an empty file or missing sections as empty", () => {
    expect(parseRegistryFile("")).toEqual({ brokers: [], bindings: [], refused: [] });
    expect(parseRegistryFile("# nothing\n")).toEqual({ brokers: [], bindings: [], refused: [] });
    expect(parseRegistryFile("brokers: []\n")).toEqual({ brokers: [], bindings: [], refused: [] });
  });

  it.each([
    ["brokers: [", ErrorCode.ConfigInvalid, /not valid YAML/],
    ["- a\n- b\n", ErrorCode.ConfigInvalid, /expected a mapping with brokers and bindings/],
    ["brokers: {a: 1}", ErrorCode.ConfigInvalid, /brokers: expected a list/],
    ["brokers: [x]", ErrorCode.ConfigInvalid, /brokers\[0\]: expected a mapping/],
    ["brokers: [{topics: [t]}]", ErrorCode.ConfigInvalid, /brokers\[0\]\.address: is required/],
    ["brokers: [{address: 'nohost'}]", ErrorCode.ConfigInvalid, /brokers\[0\]\.address: must be host:port/],
    ["brokers: [{address: ':80'}]", ErrorCode.ConfigInvalid, /brokers\[0\]\.address: must be host:port/],
    ["brokers: [{address: 'h:70000'}]", ErrorCode.ConfigInvalid, /brokers\[0\]\.address: must be host:port/],
    [
      "brokers: [{address: 'h:1', topics: [a, {}]}]",
      ErrorCode.ConfigInvalid,
      /brokers\[0\]\.topics\[1\]: must be a string/,
    ],
    ["brokers: [{address: 'h:1', env: [x]}]", ErrorCode.ConfigInvalid, /brokers\[0\]\.env: must be a string/],
    [
      "brokers: [{address: 'h:1'}, {address: 'h:2'}, {address: 'h:1'}]",
      ErrorCode.ConfigInvalid,
      /brokers\[2\]\.address: duplicates brokers\[0\]/,
    ],
    ["bindings: [x]", ErrorCode.BindingInvalid, /bindings\[0\]: expected a mapping/],
    [
      "bindings: [{topic: t, messageType: m}]",
      ErrorCode.BindingInvalid,
      /bindings\[0\]\.groupIds: is required/,
    ],
    [
      "bindings: [{groupIds: [], topic: t}]",
      ErrorCode.BindingInvalid,
      /bindings\[0\]\.groupIds: is required/,
    ],
    [
      "bindings: [{groupIds: [a, ''], topic: t}]",
      ErrorCode.BindingInvalid,
      /bindings\[0\]\.groupIds\[1\]: must not be empty/,
    ],
    [
      "bindings: [{groupIds: [a], messageType: m}]",
      ErrorCode.BindingInvalid,
      /bindings\[0\]\.topic: is required/,
    ],
    [
      "bindings: [{groupIds: [a], topic: t}]",
      ErrorCode.BindingInvalid,
      /bindings\[0\]\.messageType: is required/,
    ],
    [
      "bindings: [{groupIds: [a], topic: t, messageType: m, bindType: topic}]",
      ErrorCode.BindingInvalid,
      /bindings\[0\]\.bindType: must be/,
    ],
    [
      "bindings: [{groupIds: [a], topic: t, messageType: m, watermark: lots}]",
      ErrorCode.BindingInvalid,
      /bindings\[0\]\.watermark: must be an integer/,
    ],
    [
      "bindings: [{groupIds: [a], topic: t, messageType: m, persistent: maybe}]",
      ErrorCode.BindingInvalid,
      /bindings\[0\]\.persistent: must be true or false/,
    ],
  ])("refuses %j", (text, code, message) => {
    const err = failure(text);
    expect(err.code).toBe(code);
    expect(err.message).toMatch(message);
  });

  it("leaves out a Regx binding whose pattern Go refuses, names it, and keeps the others", () => {
    const parsed = parseRegistryFile(`
bindings:
  - {groupIds: [a], topic: t, messageType: m}
  - {groupIds: [b, c], topic: t, messageType: '(', bindType: regx}
  - {groupIds: [d], topic: t, messageType: '(?<=x)y', bindType: regx}
  - {groupIds: [e], topic: t, messageType: '^pay-(succ|fail)$', bindType: regx}
`);
    expect(parsed.bindings.map((b) => b.groupId)).toEqual(["a", "e"]);
    expect(parsed.refused.map((r) => [r.groupId, r.topic, r.pattern])).toEqual([
      ["b", "t", "("],
      ["c", "t", "("],
      ["d", "t", "(?<=x)y"],
    ]);
    const first = parsed.refused[0]?.error;
    expect(first?.code).toBe(ErrorCode.BindingInvalid);
    expect(first?.message).toMatch(/bindings\[1\]\.messageType: invalid regular expression "\("/);
  });

  it("reports conflicting entries with both entry indexes and the group", () => {
    const err = failure(`
bindings:
  - {groupIds: [a, b], topic: t, messageType: m, watermark: 10}
  - {groupIds: [c], topic: t, messageType: m, watermark: 20}
  - {groupIds: [b], topic: t, messageType: m, watermark: 30}
`);
    expect(err.code).toBe(ErrorCode.BindingInvalid);
    expect(err.message).toBe(
      'bindings[2] (group "b"): conflicts with bindings[0] (group "b"): group "b" topic "t" messageType "m" ' +
        "bound twice with watermark 10 and 30",
    );
  });

  describe("loadRegistryFile", () => {
    let dir = "";
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "kiteq-registry-"));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it("reads and parses the file at a path", async () => {
      const path = join(dir, "registry.yaml");
      await writeFile(path, EXAMPLE);
      const reg = await loadRegistryFile(path);
      expect(reg.bindings.map((b) => b.groupId)).toEqual(["s-mts-test", "s-other"]);
    });

    it("names the path when the file is missing or invalid", async () => {
      const missing = join(dir, "missing.yaml");
      await expect(loadRegistryFile(missing)).rejects.toMatchObject({
        code: ErrorCode.ConfigInvalid,
        message: expect.stringContaining(missing),
      });
      const bad = join(dir, "bad.yaml");
      await writeFile(bad, "bindings: [{topic: t}]");
      await expect(loadRegistryFile(bad)).rejects.toMatchObject({
        code: ErrorCode.BindingInvalid,
        message: `${bad}: bindings[0].groupIds: is required (a list of consumer groups)`,
        context: { path: bad },
      });
    });
  });
});
