import { describe, expect, it } from "vitest";
import { GroupCommitter } from "../../../src/store/group-commit.js";

/** A committer whose writes are held until released, recording each batch. */
function held(concurrency = 1, parallelFrom?: number) {
  const batches: number[][] = [];
  const pending: { items: number[]; resolve: (r: string[]) => void; reject: (e: unknown) => void }[] = [];
  const committer = new GroupCommitter<number, string>({
    maxBatch: 3,
    concurrency,
    parallelFrom,
    write: (items) =>
      new Promise<string[]>((resolve, reject) => {
        batches.push(items);
        pending.push({ items, resolve, reject });
      }),
  });
  const tick = () => new Promise((r) => setImmediate(r));
  return { committer, batches, pending, tick };
}

describe("GroupCommitter", () => {
  it("batches what arrives while a write is in flight, up to maxBatch, results in order", async () => {
    const { committer, batches, pending, tick } = held();
    const results = [1, 2, 3, 4, 5].map((n) => committer.submit(n));
    await tick();
    expect(batches).toEqual([[1, 2, 3]]);
    pending[0]!.resolve(["a1", "a2", "a3"]);
    await tick();
    await tick();
    expect(batches).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    pending[1]!.resolve(["a4", "a5"]);
    expect(await Promise.all(results)).toEqual(["a1", "a2", "a3", "a4", "a5"]);
    expect(committer.stats).toEqual({ batches: 2, items: 5, failures: 0 });
  });

  it("with parallelFrom, writes beside an in-flight batch only once that many items wait", async () => {
    const { committer, batches, pending, tick } = held(2, 3);
    void committer.submit(1);
    await tick();
    expect(batches).toEqual([[1]]);
    // Two waiting, below parallelFrom: the second slot stays free.
    void committer.submit(2);
    void committer.submit(3);
    await tick();
    expect(batches).toEqual([[1]]);
    // The third makes three waiting: a batch starts beside the first.
    void committer.submit(4);
    await tick();
    expect(batches).toEqual([[1], [2, 3, 4]]);
    // With both slots busy, more wait; when one slot frees, fewer than three wait and the other
    // batch is still in flight: nothing starts until it is done.
    void committer.submit(5);
    pending[0]!.resolve(["a1"]);
    await tick();
    await tick();
    expect(batches).toEqual([[1], [2, 3, 4]]);
    pending[1]!.resolve(["a2", "a3", "a4"]);
    await tick();
    await tick();
    expect(batches).toEqual([[1], [2, 3, 4], [5]]);
    pending[2]!.resolve(["a5"]);
    await committer.drain();
  });

  it("starts the next batch before telling the callers of the one just written", async () => {
    const { committer, batches, pending, tick } = held();
    const seenAtAnswer: number[][][] = [];
    committer.enqueue(1, () => seenAtAnswer.push(batches.map((b) => [...b])));
    await tick();
    committer.enqueue(2, () => undefined);
    committer.enqueue(3, () => undefined);
    await tick();
    expect(batches).toEqual([[1]]);
    pending[0]!.resolve(["a1"]);
    await tick();
    // When item 1 heard its answer, the waiting items were already on their way to the database.
    expect(seenAtAnswer).toEqual([[[1], [2, 3]]]);
    pending[1]!.resolve(["a2", "a3"]);
    await committer.drain();
  });

  it("tells `written` of each batch (results, or undefined when it failed) after its callers", async () => {
    const log: string[] = [];
    const pending: { resolve: (r: string[]) => void; reject: (e: unknown) => void }[] = [];
    const committer = new GroupCommitter<number, string>({
      maxBatch: 3,
      concurrency: 1,
      write: (items) =>
        new Promise<string[]>((resolve, reject) => {
          log.push(`write ${items.join(",")}`);
          pending.push({ resolve, reject });
        }),
      written: (items, results) => log.push(`written ${items.join(",")}: ${results?.join(",") ?? "failed"}`),
    });
    committer.enqueue(1, (err, r) => log.push(`told 1 ${r ?? (err as Error).message}`));
    await new Promise((r) => setImmediate(r));
    committer.enqueue(2, (err, r) => log.push(`told 2 ${r ?? (err as Error).message}`));
    pending[0]!.resolve(["a1"]);
    await new Promise((r) => setImmediate(r));
    pending[1]!.reject(new Error("down"));
    await committer.drain();
    expect(log).toEqual([
      "write 1",
      "write 2",
      "told 1 a1",
      "written 1: a1",
      "told 2 down",
      "written 2: failed",
    ]);
  });

  it("a failed write fails every item of its batch, with a reason even when none was given", async () => {
    const { committer, pending, tick } = held();
    const seen: unknown[] = [];
    committer.enqueue(1, (err) => seen.push(err));
    const p = committer.submit(2);
    await tick();
    pending[0]!.reject(undefined);
    await expect(p).rejects.toThrow("batch write failed");
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeInstanceOf(Error);
    expect(committer.stats.failures).toBe(1);
  });

  it("a callback that throws does not keep the rest of its batch from hearing", async () => {
    const { committer, pending, tick } = held();
    const heard: number[] = [];
    committer.enqueue(1, () => {
      heard.push(1);
      throw new Error("callback bug");
    });
    committer.enqueue(2, () => heard.push(2));
    committer.enqueue(3, () => heard.push(3));
    await tick();
    const unhandled = new Promise<unknown>((resolve) => process.once("unhandledRejection", resolve));
    pending[0]!.resolve(["x", "y", "z"]);
    expect(((await unhandled) as Error).message).toBe("callback bug");
    expect(heard).toEqual([1, 2, 3]);
  });

  it("a caller that throws does not keep `written` from hearing of its batch", async () => {
    const pending: ((r: string[]) => void)[] = [];
    const written: string[][] = [];
    const committer = new GroupCommitter<number, string>({
      maxBatch: 3,
      concurrency: 1,
      write: () => new Promise<string[]>((resolve) => pending.push(resolve)),
      written: (_items, results) => written.push([...(results ?? [])]),
    });
    committer.enqueue(1, () => {
      throw new Error("callback bug");
    });
    await new Promise((r) => setImmediate(r));
    const unhandled = new Promise<unknown>((resolve) => process.once("unhandledRejection", resolve));
    pending[0]!(["a1"]);
    expect(((await unhandled) as Error).message).toBe("callback bug");
    expect(written).toEqual([["a1"]]);
  });

  it("a `written` that throws does not keep the callers from hearing their results", async () => {
    const pending: ((r: string[]) => void)[] = [];
    const committer = new GroupCommitter<number, string>({
      maxBatch: 3,
      concurrency: 1,
      write: () => new Promise<string[]>((resolve) => pending.push(resolve)),
      written: () => {
        throw new Error("hook bug");
      },
    });
    const p = committer.submit(1);
    await new Promise((r) => setImmediate(r));
    const unhandled = new Promise<unknown>((resolve) => process.once("unhandledRejection", resolve));
    pending[0]!(["a1"]);
    expect(await p).toBe("a1");
    expect(((await unhandled) as Error).message).toBe("hook bug");
  });

  it("drain waits for everything submitted", async () => {
    const { committer, pending, tick } = held(2);
    for (let n = 0; n < 5; n++) committer.enqueue(n, () => undefined);
    await tick();
    let drained = false;
    const d = committer.drain().then(() => {
      drained = true;
    });
    pending[0]!.resolve(["", "", ""]);
    pending[1]!.resolve(["", ""]);
    await d;
    expect(drained).toBe(true);
    expect(committer.pending).toBe(0);
  });

  it("with weights, cuts a batch before the item that would pass maxBatchWeight and counts what is pending", async () => {
    const batches: number[][] = [];
    const pending: ((r: string[]) => void)[] = [];
    // Items weigh their own value; a batch weighs at most 10 (and holds at least one item).
    const committer = new GroupCommitter<number, string>({
      maxBatch: 100,
      concurrency: 1,
      maxBatchWeight: 10,
      write: (items) =>
        new Promise<string[]>((resolve) => {
          batches.push(items);
          pending.push(resolve);
        }),
    });
    const tick = () => new Promise((r) => setImmediate(r));
    for (const n of [4, 5, 2, 12, 3]) committer.enqueue(n, () => undefined, n);
    expect(committer.pendingWeight).toBe(26);
    await tick();
    expect(batches).toEqual([[4, 5]]);
    pending[0]!(["", ""]);
    await tick();
    // 2 + 12 would pass 10: the 2 goes alone, then the 12 (heavier than a batch) alone.
    expect(batches).toEqual([[4, 5], [2]]);
    expect(committer.pendingWeight).toBe(17);
    pending[1]!([""]);
    await tick();
    expect(batches).toEqual([[4, 5], [2], [12]]);
    pending[2]!([""]);
    await tick();
    expect(batches).toEqual([[4, 5], [2], [12], [3]]);
    pending[3]!([""]);
    await tick();
    expect(committer.pendingWeight).toBe(0);
  });
});
