/** The `kiteq.deliverAt` property: parsed, bounded by the expiry, refused where unsupported. */
import { describe, expect, it } from "vitest";
import { buildHeader } from "../../../src/client/connection.js";
import type { Header } from "../../../src/protocol/messages.js";
import { DELIVER_AT_PROPERTY } from "../../../src/publish/deliver-at.js";
import { validatePublish } from "../../../src/publish/validate.js";

const NOW_MS = Date.UTC(2026, 0, 15, 12, 0, 0);
const FIELD = `properties["${DELIVER_AT_PROPERTY}"].value`;
const header = (value: string, h: Partial<Header> = {}) =>
  buildHeader({
    topic: "trade",
    messageType: "pay",
    groupId: "p1",
    createTime: NOW_MS / 1000,
    properties: [{ key: DELIVER_AT_PROPERTY, value }],
    ...h,
  });

describe("kiteq.deliverAt", () => {
  it("a future time is kept; a past one means now; absent means now", () => {
    const r = validatePublish(header(String(NOW_MS + 5000)), () => true, NOW_MS);
    expect(r.ok && r.header.deliverAt?.getTime()).toBe(NOW_MS + 5000);
    const past = validatePublish(header(String(NOW_MS - 5000)), () => true, NOW_MS);
    expect(past.ok && past.header.deliverAt).toBe(null);
    const none = validatePublish(
      buildHeader({ topic: "t", messageType: "m", groupId: "g" }),
      () => true,
      NOW_MS,
    );
    expect(none.ok && none.header.deliverAt).toBe(null);
  });

  it.each(["", "soon", "1.5", "-1", "1e12", "9".repeat(16)])("refuses %j naming the field", (value) => {
    const r = validatePublish(header(value), () => true, NOW_MS);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.field).toBe(FIELD);
      expect(r.reason).toContain("unix milliseconds");
    }
  });

  it("refuses a time after the message's expiry", () => {
    const expiredTime = NOW_MS / 1000 + 60;
    const ok = validatePublish(header(String(NOW_MS + 60_000), { expiredTime }), () => true, NOW_MS);
    expect(ok.ok).toBe(true);
    const r = validatePublish(header(String(NOW_MS + 60_001), { expiredTime }), () => true, NOW_MS);
    expect(r.ok === false && r.field).toBe(FIELD);
    expect(r.ok === false && r.reason).toContain("after the message's expiry");
    // Without an expiredTime the 7-day cap is the bound.
    const far = validatePublish(header(String(NOW_MS + 8 * 86_400_000)), () => true, NOW_MS);
    expect(far.ok).toBe(false);
  });

  it("refuses it on fly and on uncommitted (2PC) messages", () => {
    const at = String(NOW_MS + 1000);
    expect(validatePublish(header(at, { fly: true }), () => true, NOW_MS).ok).toBe(false);
    expect(validatePublish(header(at, { commit: false }), () => true, NOW_MS).ok).toBe(false);
  });
});
