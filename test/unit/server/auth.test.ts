import { describe, expect, it } from "vitest";
import { HANDSHAKE_REFUSED, secretChecker } from "../../../src/server/auth.js";

describe("secretChecker", () => {
  it("accepts every handshake when no secrets are configured (KiteQ's behaviour)", () => {
    const check = secretChecker(new Map());
    expect(check("any", "")).toBeNull();
    expect(check("other", "whatever")).toBeNull();
  });

  it("accepts the right secret, and gives one refusal text for a wrong secret and an unknown group", () => {
    const check = secretChecker(
      new Map([
        ["p1", "s3cret"],
        ["c1", "a much longer secret than the others"],
      ]),
    );
    expect(check("p1", "s3cret")).toBeNull();
    expect(check("c1", "a much longer secret than the others")).toBeNull();
    const refusals = [
      check("p1", "wrong"),
      check("p1", ""),
      check("p1", "s3cret "),
      check("p1", "a much longer secret than the others"),
      check("unknown", "s3cret"),
      check("unknown", ""),
      check("", ""),
    ];
    expect(new Set(refusals)).toEqual(new Set([HANDSHAKE_REFUSED]));
    expect(HANDSHAKE_REFUSED).not.toMatch(/p1|unknown"|wrong secret for|no secret configured/);
  });
});
