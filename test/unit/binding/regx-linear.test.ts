/**
 * Regx bindings run on a linear-time engine (re2js, Go's syntax): a catastrophic pattern costs
 * microseconds, and a pattern Go refuses is refused where the binding enters, alone.
 */
import { describe, expect, it } from "vitest";
import { parseBindingsJson, type RefusedPattern, regxBinding } from "../../../src/binding/binding.js";
import { BindingMatcher } from "../../../src/binding/matcher.js";
import { ErrorCode, KiteqError } from "../../../src/errors.js";

describe("Regx bindings in linear time", () => {
  it("matches (a+)+$ against a 30+ character aaaa…! messageType in milliseconds", () => {
    const m = new BindingMatcher(
      [regxBinding("evil", "t", "(a+)+$", 10, true), regxBinding("ok", "t", "a!$", 10, true)],
      {
        cacheSize: 0,
      },
    );
    for (const n of [30, 40, 64, 255]) {
      const messageType = `${"a".repeat(n)}!`;
      const t0 = performance.now();
      const groups = m.groupsFor("t", messageType).map((b) => b.groupId);
      expect(performance.now() - t0).toBeLessThan(20);
      // Go: (a+)+$ needs the a's to reach the end; the "!" stops them, so only "ok" matches.
      expect(groups).toEqual(["ok"]);
    }
    expect(m.groupsFor("t", "aaaa").map((b) => b.groupId)).toEqual(["evil"]);
  });

  it("refuses a pattern Go refuses with BindingInvalid naming group, topic and pattern", () => {
    let err: unknown;
    try {
      regxBinding("g1", "trade", "(?=x)", 10, true);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KiteqError);
    const e = err as KiteqError;
    expect(e.code).toBe(ErrorCode.BindingInvalid);
    expect(e.context).toMatchObject({
      groupId: "g1",
      topic: "trade",
      pattern: "(?=x)",
      field: "messageType",
    });
    expect(e.message).toMatch(/invalid regular expression "\(\?=x\)" \(Go\/RE2 syntax\)/);
  });

  it("parseBindingsJson with a refused list leaves out only the bad Regx binding", () => {
    const json = JSON.stringify([
      { groupId: "g", topic: "t", messageType: "pay", bindType: 0, watermark: 10, persistent: true },
      { groupId: "g", topic: "t", messageType: "(a)\\1", bindType: 1, watermark: 10, persistent: true },
      { groupId: "g", topic: "t", messageType: "^refund-.*$", bindType: 1, watermark: 10, persistent: true },
    ]);
    // Without a list, the node is refused as a whole (as before).
    expect(() => parseBindingsJson(json)).toThrow(/invalid regular expression/);
    const refused: RefusedPattern[] = [];
    expect(parseBindingsJson(json, refused).map((b) => b.messageType)).toEqual(["pay", "^refund-.*$"]);
    expect(refused.map((r) => [r.groupId, r.topic, r.pattern])).toEqual([["g", "t", "(a)\\1"]]);
    // Other errors still refuse the node.
    expect(() => parseBindingsJson('[{"groupId":"g","topic":"t","bindType":1}]', refused)).toThrow(
      /messageType: is required/,
    );
  });
});
