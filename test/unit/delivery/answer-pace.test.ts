/** A consumer connection's bound on unanswered pushes, from how fast it answers. */
import { describe, expect, it } from "vitest";
import { AnswerPace, MIN_UNANSWERED } from "../../../src/delivery/answer-pace.js";

describe("AnswerPace", () => {
  it("starts at the floor, then allows what the connection answers in the horizon", () => {
    const pace = new AnswerPace();
    expect(pace.limit(10_000, 2_500)).toBe(MIN_UNANSWERED);
    // 200 answers a second: 500 in 2.5 s.
    for (let i = 0; i < 200; i++) pace.answered(10_000 + i * 5);
    expect(pace.limit(10_999, 2_500)).toBe(500);
    expect(pace.limit(11_500, 2_500)).toBe(500);
  });

  it("follows a slower rate within two seconds, and forgets a connection that stopped answering", () => {
    const pace = new AnswerPace();
    for (let i = 0; i < 1000; i++) pace.answered(20_000 + i);
    expect(pace.limit(20_999, 2_000)).toBe(2_000);
    for (let i = 0; i < 10; i++) pace.answered(21_000 + i * 100);
    for (let i = 0; i < 10; i++) pace.answered(22_000 + i * 100);
    expect(pace.limit(22_999, 2_000)).toBe(MIN_UNANSWERED);
    expect(pace.limit(30_000, 2_000)).toBe(MIN_UNANSWERED);
  });
});
