import { describe, expect, it } from "vitest";
import { DeadlineExceeded, withDeadline } from "../../src/deadline.js";
import { ErrorCode } from "../../src/errors.js";

const settleIn = <T>(ms: number, settle: () => T) =>
  new Promise<T>((resolve) => setTimeout(() => resolve(settle()), ms));

describe("withDeadline", () => {
  it("passes on what settles in time", async () => {
    await expect(
      withDeadline(
        settleIn(5, () => 7),
        1000,
      ),
    ).resolves.toBe(7);
    await expect(withDeadline(Promise.reject(new Error("boom")), 1000)).rejects.toThrow("boom");
  });

  it("rejects with DeadlineExceeded naming what did not come", async () => {
    const err = await withDeadline(
      settleIn(200, () => 1),
      10,
      "store ack",
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceeded);
    expect((err as DeadlineExceeded).code).toBe(ErrorCode.Timeout);
    expect((err as Error).message).toBe("no store ack within 10 ms");
  });

  it("rejects with the caller's error, made once when the deadline passes", async () => {
    let made = 0;
    const late = () => {
      made++;
      return new Error("shard down");
    };
    await expect(
      withDeadline(
        settleIn(200, () => 1),
        10,
        late,
      ),
    ).rejects.toThrow("shard down");
    expect(made).toBe(1);
    expect(
      await withDeadline(
        settleIn(1, () => 2),
        1000,
        late,
      ),
    ).toBe(2);
    expect(made).toBe(1);
  });

  it("leaves no unhandled rejection when the promise fails after the deadline", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const failsLate = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("late")), 30));
      await expect(withDeadline(failsLate, 5)).rejects.toBeInstanceOf(DeadlineExceeded);
      await new Promise((r) => setTimeout(r, 60));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
