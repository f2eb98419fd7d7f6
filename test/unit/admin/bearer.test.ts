import { describe, expect, it } from "vitest";
import { bearerCheck } from "../../../src/admin/index.js";
import { EMBEDDED_USER, embeddedTcpUrl, newPassword } from "../../../src/store/embedded-access.js";

describe("admin bearer token check", () => {
  it("lets everything through without a token", () => {
    const check = bearerCheck(null);
    expect(check(undefined)).toBe(true);
    expect(check("Bearer whatever")).toBe(true);
  });

  it("accepts only `Bearer <token>` with the exact token", () => {
    const token = "s3cret-token-0123456789";
    const check = bearerCheck(token);
    expect(check(`Bearer ${token}`)).toBe(true);
    expect(check(`bearer ${token}`)).toBe(true);
    expect(check(`Bearer  ${token} `)).toBe(true);
    expect(check(undefined)).toBe(false);
    expect(check("")).toBe(false);
    expect(check(token)).toBe(false);
    expect(check(`Basic ${token}`)).toBe(false);
    expect(check(`Bearer ${token}x`)).toBe(false);
    expect(check(`Bearer ${token.slice(0, -1)}`)).toBe(false);
    expect(check(`Bearer ${token} extra`)).toBe(false);
    expect(check("Bearer ")).toBe(false);
  });
});

describe("embedded PostgreSQL passwords and URLs", () => {
  it("makes a different 32-character URL-safe password each time", () => {
    const a = newPassword();
    const b = newPassword();
    expect(a).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(a).not.toBe(b);
    expect(a).not.toBe("postgres");
  });

  it("names loopback TCP, the superuser and the password in the URL", () => {
    const url = new URL(embeddedTcpUrl(15432, "p@ss/w:rd", "kiteq"));
    expect(url.hostname).toBe("127.0.0.1");
    expect(url.port).toBe("15432");
    expect(url.username).toBe(EMBEDDED_USER);
    expect(decodeURIComponent(url.password)).toBe("p@ss/w:rd");
    expect(url.pathname).toBe("/kiteq");
  });
});
