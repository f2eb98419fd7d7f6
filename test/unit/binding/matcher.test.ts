import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type Binding,
  BindType,
  bindingMatches,
  directBinding,
  fanoutBinding,
  parseBindingsJson,
  regxBinding,
} from "../../../src/binding/binding.js";
import {
  BindingMatcher,
  findBindingConflict,
  mergeBindings,
  replaceGroupBindings,
  validateBindings,
} from "../../../src/binding/matcher.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";

const groups = (list: readonly Binding[]) => list.map((b) => b.groupId);

describe("BindingMatcher", () => {
  const matcher = new BindingMatcher([
    directBinding("d", "trade", "pay-succ", 100, true),
    regxBinding("r", "trade", "^pay-(succ|fail)$", 200, true),
    fanoutBinding("f", "trade", 300, false),
    directBinding("other-topic", "user", "pay-succ", 100, true),
  ]);

  it("Direct matches the exact messageType only", () => {
    expect(groups(matcher.groupsFor("trade", "pay-succ"))).toContain("d");
    expect(groups(matcher.groupsFor("trade", "pay-succ-200"))).not.toContain("d");
    expect(groups(matcher.groupsFor("trade", "PAY-SUCC"))).not.toContain("d");
  });

  it("Regx tests the pattern against messageType", () => {
    expect(groups(matcher.groupsFor("trade", "pay-fail"))).toEqual(["r", "f"]);
    expect(groups(matcher.groupsFor("trade", "pay-refund"))).toEqual(["f"]);
  });

  it("Regx is an unanchored search, like Go's regexp.MatchString", () => {
    const m = new BindingMatcher([regxBinding("g", "t", "succ", 1, true)]);
    expect(groups(m.groupsFor("t", "pay-succ-200"))).toEqual(["g"]);
    expect(groups(m.groupsFor("t", "pay-fail"))).toEqual([]);
  });

  it("Fanout receives every messageType of its topic, and nothing of other topics", () => {
    expect(groups(matcher.groupsFor("trade", "anything"))).toEqual(["f"]);
    expect(groups(matcher.groupsFor("trade", ""))).toEqual(["f"]);
    expect(groups(matcher.groupsFor("user", "anything"))).toEqual([]);
    expect(groups(matcher.groupsFor("nope", "pay-succ"))).toEqual([]);
  });

  it("returns every bound group once, in order of the group's first binding for the topic", () => {
    expect(groups(matcher.groupsFor("trade", "pay-succ"))).toEqual(["d", "r", "f"]);
    expect(groups(matcher.groupsFor("user", "pay-succ"))).toEqual(["other-topic"]);
    const m = new BindingMatcher([
      directBinding("b", "t", "x", 1, true),
      directBinding("a", "t", "m", 1, true),
      directBinding("b", "t", "m", 1, true),
    ]);
    expect(groups(m.groupsFor("t", "m"))).toEqual(["b", "a"]);
  });

  it("gives a group with several matching bindings the message once, most specific binding first", () => {
    const m = new BindingMatcher([
      fanoutBinding("g", "t", 10, false),
      regxBinding("g", "t", "^pay", 20, true),
      regxBinding("g", "t", "succ", 25, true),
      directBinding("g", "t", "pay-succ", 30, true),
      directBinding("h", "t", "pay-succ", 40, true),
    ]);
    const hit = m.groupsFor("t", "pay-succ");
    expect(groups(hit)).toEqual(["g", "h"]);
    expect(hit[0]?.bindType).toBe(BindType.Direct);
    expect(hit[0]?.watermark).toBe(30);
    // Regx beats Fanout; the first Regx in list order wins among equals.
    expect(m.groupsFor("t", "pay-fail")[0]?.watermark).toBe(20);
    expect(m.groupsFor("t", "x-succ")[0]?.watermark).toBe(25);
    expect(m.groupsFor("t", "other")[0]?.bindType).toBe(BindType.Fanout);
  });

  it("caches results per (topic, messageType) within its bound", () => {
    const m = new BindingMatcher([regxBinding("g", "t", ".", 1, true)], { cacheSize: 3 });
    const first = m.groupsFor("t", "a");
    expect(m.groupsFor("t", "a")).toBe(first);
    for (const type of ["b", "c", "d", "e", "f"]) m.groupsFor("t", type);
    expect(m.cachedResults).toBe(3);
    // Evicted entries are recomputed with the same answer.
    expect(m.groupsFor("t", "a")).toEqual(first);
    // Unknown topics are not cached (they cannot match anything).
    m.groupsFor("unknown", "a");
    expect(m.cachedResults).toBe(3);
  });

  it("works with the cache disabled, and keeps topic and messageType apart in the key", () => {
    const m = new BindingMatcher(
      [directBinding("g1", "a", "b\u0000c", 1, true), directBinding("g2", "a\u0000b", "c", 1, true)],
      { cacheSize: 0 },
    );
    expect(groups(m.groupsFor("a", "b\u0000c"))).toEqual(["g1"]);
    expect(groups(m.groupsFor("a\u0000b", "c"))).toEqual(["g2"]);
    expect(m.cachedResults).toBe(0);
  });

  it("agrees with a brute-force reference and never repeats a group (property)", () => {
    const binding = fc.oneof(
      fc
        .tuple(
          fc.constantFrom("g1", "g2", "g3"),
          fc.constantFrom("t1", "t2"),
          fc.constantFrom("a", "b", "ab"),
        )
        .map(([g, t, m]) => directBinding(g, t, m, 1, true)),
      fc
        .tuple(
          fc.constantFrom("g1", "g2", "g3"),
          fc.constantFrom("t1", "t2"),
          fc.constantFrom("a", "^b", "b$", "."),
        )
        .map(([g, t, m]) => regxBinding(g, t, m, 1, true)),
      fc
        .tuple(fc.constantFrom("g1", "g2", "g3"), fc.constantFrom("t1", "t2"))
        .map(([g, t]) => fanoutBinding(g, t, 1, true)),
    );
    fc.assert(
      fc.property(
        fc.array(binding, { maxLength: 10 }),
        fc.constantFrom("t1", "t2", "t3"),
        fc.constantFrom("", "a", "b", "ab", "ba", "c"),
        (list, topic, type) => {
          const got = new BindingMatcher(list, { cacheSize: 2 }).groupsFor(topic, type);
          // Groups in order of their first binding for the topic, kept if any of their bindings match.
          const order = [...new Set(list.filter((b) => b.topic === topic).map((b) => b.groupId))];
          const expected = order.filter((g) =>
            list.some((b) => b.groupId === g && bindingMatches(b, topic, type)),
          );
          expect(groups(got)).toEqual(expected);
          for (const b of got) expect(bindingMatches(b, topic, type)).toBe(true);
        },
      ),
    );
  });
});

function bindingInvalid(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(KiteqError);
    expect((err as KiteqError).code).toBe(ErrorCode.BindingInvalid);
    return (err as KiteqError).message;
  }
  throw new Error("expected BindingInvalid");
}

describe("binding conflicts", () => {
  it("reports the same group, topic and messageType bound with different settings", () => {
    const base = directBinding("g", "t", "m", 100, true);
    expect(findBindingConflict([base, regxBinding("g", "t", "m", 100, true)])).toEqual({
      first: 0,
      second: 1,
      field: "bindType",
    });
    expect(findBindingConflict([base, directBinding("g", "t", "m", 200, true)])?.field).toBe("watermark");
    expect(findBindingConflict([base, directBinding("g", "t", "m", 100, false)])?.field).toBe("persistent");
    const message = bindingInvalid(() => validateBindings([base, directBinding("g", "t", "m", 200, true)]));
    expect(message).toBe(
      'bindings[1]: conflicts with bindings[0]: group "g" topic "t" messageType "m" bound twice with watermark 100 and 200',
    );
  });

  it("accepts exact repeats and bindings that differ in group, topic or messageType", () => {
    const list = [
      directBinding("g", "t", "m", 100, true),
      directBinding("g", "t", "m", 100, true),
      directBinding("h", "t", "m", 1, false),
      directBinding("g", "u", "m", 1, false),
      directBinding("g", "t", "n", 1, false),
      fanoutBinding("g", "t", 5, false),
    ];
    expect(findBindingConflict(list)).toBeUndefined();
    expect(() => validateBindings(list)).not.toThrow();
  });

  it("treats two fanout bindings of a group and topic with different watermarks as a conflict", () => {
    expect(
      findBindingConflict([fanoutBinding("g", "t", 1, true), fanoutBinding("g", "t", 2, true)])?.field,
    ).toBe("watermark");
  });
});

describe("mergeBindings / replaceGroupBindings", () => {
  const existing = [
    directBinding("g", "trade", "old-1", 100, true),
    directBinding("h", "trade", "keep", 100, true),
    directBinding("g", "trade", "old-2", 100, true),
    directBinding("g", "user", "keep-too", 100, true),
  ];

  it("replaces all of a group's bindings for a topic with its new bind node", () => {
    const incoming = parseBindingsJson(
      '[{"groupId":"g","topic":"trade","messageType":"new","bindType":0,"watermark":5,"persistent":true}]',
    );
    const merged = mergeBindings(existing, incoming);
    expect(merged.map((b) => `${b.groupId}/${b.topic}/${b.messageType}`)).toEqual([
      "h/trade/keep",
      "g/user/keep-too",
      "g/trade/new",
    ]);
    expect(existing).toHaveLength(4); // not mutated
  });

  it("allows a new node to change settings that would conflict with the old node", () => {
    const merged = mergeBindings(existing, [directBinding("g", "trade", "old-1", 999, false)]);
    expect(merged.filter((b) => b.messageType === "old-1")).toEqual([
      directBinding("g", "trade", "old-1", 999, false),
    ]);
    expect(() => validateBindings(merged)).not.toThrow();
  });

  it("rejects an incoming node that conflicts with itself, and keeps exact repeats once", () => {
    expect(
      bindingInvalid(() =>
        mergeBindings(existing, [
          directBinding("g", "trade", "x", 1, true),
          regxBinding("g", "trade", "x", 1, true),
        ]),
      ),
    ).toMatch(/bound twice with bindType 0 and 1/);
    const twice = directBinding("z", "trade", "x", 1, true);
    expect(mergeBindings([], [twice, twice])).toEqual([twice]);
  });

  it("removes a group's bindings of a topic when its node is deleted (empty content)", () => {
    const after = replaceGroupBindings(existing, "trade", "g", []);
    expect(after.map((b) => b.messageType)).toEqual(["keep", "keep-too"]);
  });

  it("refuses node content that belongs to another group or topic", () => {
    expect(
      bindingInvalid(() =>
        replaceGroupBindings(existing, "trade", "g", [directBinding("h", "trade", "x", 1, true)]),
      ),
    ).toMatch(/bind node of group "g" topic "trade" holds a binding of group "h"/);
    expect(
      bindingInvalid(() =>
        replaceGroupBindings(existing, "trade", "g", [directBinding("g", "user", "x", 1, true)]),
      ),
    ).toMatch(/topic "user"/);
  });

  it("replaces the node's bindings and leaves the rest", () => {
    const after = replaceGroupBindings(existing, "trade", "g", [fanoutBinding("g", "trade", 7, true)]);
    expect(after.map((b) => `${b.groupId}/${b.topic}/${b.messageType}`)).toEqual([
      "h/trade/keep",
      "g/user/keep-too",
      "g/trade/*",
    ]);
  });
});
