import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BIND_VERSION,
  type Binding,
  BindType,
  bindingMatches,
  bindingsToJson,
  createBinding,
  DEFAULT_PERSISTENT,
  DEFAULT_WATERMARK,
  directBinding,
  FANOUT_MESSAGE_TYPE,
  fanoutBinding,
  MAX_BINDING_WATERMARK,
  parseBindingsJson,
  regxBinding,
} from "../../../src/binding/binding.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";

const GOLDEN =
  '[{"groupId":"g","topic":"trade","messageType":"pay-succ","bindType":0,"version":"1.0.0",' +
  '"watermark":1000,"persistent":true}]';

function bindingError(fn: () => unknown): KiteqError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(KiteqError);
    expect((err as KiteqError).code).toBe(ErrorCode.BindingInvalid);
    return err as KiteqError;
  }
  throw new Error("expected a BindingInvalid error");
}

describe("KiteQ binding JSON", () => {
  it("parses KiteQ's exact format", () => {
    expect(parseBindingsJson(GOLDEN)).toEqual([
      {
        groupId: "g",
        topic: "trade",
        messageType: "pay-succ",
        bindType: BindType.Direct,
        version: "1.0.0",
        watermark: 1000,
        persistent: true,
      },
    ]);
  });

  it("round-trips to the golden string byte for byte", () => {
    expect(bindingsToJson(parseBindingsJson(GOLDEN))).toBe(GOLDEN);
    expect(bindingsToJson([directBinding("g", "trade", "pay-succ", 1000, true)])).toBe(GOLDEN);
  });

  it("serialises several bindings compactly, in order, with the fanout messageType", () => {
    const json = bindingsToJson([
      regxBinding("g", "trade", "pay-.*", 10, false),
      fanoutBinding("g", "user", 6000, true),
    ]);
    expect(json).toBe(
      '[{"groupId":"g","topic":"trade","messageType":"pay-.*","bindType":1,"version":"1.0.0","watermark":10,"persistent":false},' +
        '{"groupId":"g","topic":"user","messageType":"*","bindType":2,"version":"1.0.0","watermark":6000,"persistent":true}]',
    );
  });

  it("applies KiteQ's defaults for missing fields", () => {
    const [b] = parseBindingsJson('[{"groupId":"g","topic":"trade","messageType":"m","bindType":0}]');
    expect(b).toMatchObject({ version: "", watermark: DEFAULT_WATERMARK, persistent: DEFAULT_PERSISTENT });
    expect(DEFAULT_WATERMARK).toBe(6000);
    // KiteQ (Go) decodes a missing bool as false.
    expect(DEFAULT_PERSISTENT).toBe(false);
  });

  it("keeps a watermark above 6000 (the broker caps it) and treats 0 or less as the default", () => {
    const parse = (w: number) =>
      parseBindingsJson(`[{"groupId":"g","topic":"t","messageType":"m","bindType":0,"watermark":${w}}]`)[0]
        ?.watermark;
    expect(parse(6001)).toBe(6001);
    expect(parse(100000)).toBe(100000);
    expect(parse(MAX_BINDING_WATERMARK)).toBe(MAX_BINDING_WATERMARK);
    expect(() => parse(MAX_BINDING_WATERMARK + 1)).toThrow(/watermark: must be at most 2147483647/);
    expect(parse(6000)).toBe(6000);
    expect(parse(1)).toBe(1);
    expect(parse(0)).toBe(DEFAULT_WATERMARK);
    expect(parse(-5)).toBe(DEFAULT_WATERMARK);
  });

  it("treats empty data and null as no bindings, ignores unknown keys", () => {
    expect(parseBindingsJson("")).toEqual([]);
    expect(parseBindingsJson("  \n")).toEqual([]);
    expect(parseBindingsJson("null")).toEqual([]);
    expect(parseBindingsJson("[]")).toEqual([]);
    const [b] = parseBindingsJson(
      '[{"groupId":"g","topic":"t","messageType":"m","bindType":0,"Handler":null}]',
    );
    expect(b?.groupId).toBe("g");
  });

  it("forces the fanout messageType to *", () => {
    const [b] = parseBindingsJson('[{"groupId":"g","topic":"t","messageType":"anything","bindType":2}]');
    expect(b?.messageType).toBe(FANOUT_MESSAGE_TYPE);
    const [c] = parseBindingsJson('[{"groupId":"g","topic":"t","bindType":2}]');
    expect(c?.messageType).toBe("*");
  });

  it.each([
    ["{", /not valid JSON/],
    ['{"groupId":"g"}', /expected a JSON array, got an object/],
    ["[1]", /bindings\[0\]: expected an object, got 1/],
    ['[{"topic":"t","messageType":"m","bindType":0}]', /bindings\[0\]\.groupId: is required/],
    [
      '[{"groupId":5,"topic":"t","messageType":"m","bindType":0}]',
      /bindings\[0\]\.groupId: must be a string, got 5/,
    ],
    [
      '[{"groupId":"a/b","topic":"t","messageType":"m","bindType":0}]',
      /bindings\[0\]\.groupId: must not contain "\/"/,
    ],
    ['[{"groupId":"g","messageType":"m","bindType":0}]', /bindings\[0\]\.topic: is required/],
    ['[{"groupId":"g","topic":"t","bindType":0}]', /bindings\[0\]\.messageType: is required/],
    [
      '[{"groupId":"g","topic":"t","messageType":7,"bindType":1}]',
      /bindings\[0\]\.messageType: must be a string/,
    ],
    ['[{"groupId":"g","topic":"t","messageType":"m"}]', /bindings\[0\]\.bindType: is required/],
    ['[{"groupId":"g","topic":"t","messageType":"m","bindType":3}]', /bindings\[0\]\.bindType: must be/],
    [
      '[{"groupId":"g","topic":"t","messageType":"m","bindType":0,"watermark":"10"}]',
      /\.watermark: must be an integer/,
    ],
    [
      '[{"groupId":"g","topic":"t","messageType":"m","bindType":0,"watermark":1.5}]',
      /\.watermark: must be an integer/,
    ],
    [
      '[{"groupId":"g","topic":"t","messageType":"m","bindType":0,"persistent":"yes"}]',
      /\.persistent: must be true or false/,
    ],
    [
      '[{"groupId":"g","topic":"t","messageType":"m","bindType":0,"version":1}]',
      /\.version: must be a string/,
    ],
  ])("rejects %s with a message naming the field", (text, message) => {
    expect(bindingError(() => parseBindingsJson(text)).message).toMatch(message);
  });

  it("names the index of the bad element and carries it as context", () => {
    const text =
      '[{"groupId":"g","topic":"t","messageType":"m","bindType":0},' +
      '{"groupId":"g","topic":"t","messageType":"(","bindType":1}]';
    const err = bindingError(() => parseBindingsJson(text));
    expect(err.message).toMatch(/^bindings\[1\]\.messageType: invalid regular expression "\("/);
    expect(err.context).toMatchObject({ index: 1, field: "messageType", groupId: "g", topic: "t" });
  });

  it("rejects invalid regular expressions, including syntax Go refuses", () => {
    for (const pattern of ["(", "[a-", "a)", "(a)\\1", "(?=x)", "(?<!x)y", "*a"]) {
      expect(() => regxBinding("g", "t", pattern, 10, true), pattern).toThrow(KiteqError);
    }
    expect(regxBinding("g", "t", "pay-(succ|fail)$", 10, true).messageType).toBe("pay-(succ|fail)$");
  });

  it("freezes created bindings and keeps helper defaults KiteQ-like", () => {
    const b = directBinding("g", "t", "m", 100, false);
    expect(Object.isFrozen(b)).toBe(true);
    expect(b.version).toBe(BIND_VERSION);
    expect(
      createBinding({ groupId: "g", topic: "t", messageType: "m", bindType: BindType.Direct }).version,
    ).toBe("");
  });

  it("accepts bind type names as well as numbers", () => {
    const [b] = parseBindingsJson('[{"groupId":"g","topic":"t","messageType":"m.*","bindType":"Regx"}]');
    expect(b?.bindType).toBe(BindType.Regx);
  });

  it("matches a single binding like KiteQ's Binding.matches", () => {
    expect(bindingMatches(directBinding("g", "t", "pay", 1, true), "t", "pay")).toBe(true);
    expect(bindingMatches(directBinding("g", "t", "pay", 1, true), "t", "pay2")).toBe(false);
    expect(bindingMatches(directBinding("g", "t", "pay", 1, true), "u", "pay")).toBe(false);
    // Unanchored search, as Go's regexp.MatchString.
    expect(bindingMatches(regxBinding("g", "t", "succ", 1, true), "t", "pay-succ-200")).toBe(true);
    expect(bindingMatches(regxBinding("g", "t", "^succ", 1, true), "t", "pay-succ-200")).toBe(false);
    expect(bindingMatches(fanoutBinding("g", "t", 1, true), "t", "")).toBe(true);
    expect(bindingMatches(fanoutBinding("g", "t", 1, true), "u", "x")).toBe(false);
  });

  it("round-trips any valid binding list (property)", () => {
    const name = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !s.includes("/"));
    const binding: fc.Arbitrary<Binding> = fc
      .record({
        groupId: name,
        topic: name,
        messageType: name,
        bindType: fc.constantFrom(BindType.Direct, BindType.Fanout),
        version: fc.string({ maxLength: 6 }),
        watermark: fc.integer({ min: 1, max: 6000 }),
        persistent: fc.boolean(),
      })
      .map((r) => createBinding(r));
    fc.assert(
      fc.property(fc.array(binding, { maxLength: 8 }), (list) => {
        const json = bindingsToJson(list);
        expect(parseBindingsJson(json)).toEqual(list);
        expect(bindingsToJson(parseBindingsJson(json))).toBe(json);
      }),
    );
  });
});
