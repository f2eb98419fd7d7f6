/**
 * The checker's give-up sweep stops at a stop: a node started after a long outage finds every
 * pending message past the give-up age, and SIGTERM waited for the sweep to roll all of them back
 * (145,600 at size: 2.3 s after the signal; it grows with the backlog).
 */
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config/index.js";
import type { Dispatcher } from "../../../src/delivery/dispatcher.js";
import { silentLogger } from "../../../src/log.js";
import { TxChecker } from "../../../src/tx/checker.js";
import { ProducerSessions } from "../../../src/tx/producers.js";

describe("TxChecker stop", () => {
  it("ends the give-up sweep after the batch in hand, however many are past the age", async () => {
    let giveUpBatches = 0;
    // A store where every give-up batch comes back full: an endless backlog past the age.
    const pool = {
      query: async (q: { text: string } | string) => {
        await new Promise((r) => setTimeout(r, 2));
        const text = typeof q === "string" ? q : q.text;
        if (text.includes("DELETE FROM pending_transactions")) {
          giveUpBatches++;
          return { rows: [], rowCount: 500 };
        }
        return { rows: [], rowCount: 0 };
      },
    } as unknown as pg.Pool;
    const checker = new TxChecker(
      {
        pool,
        config: loadConfig([], {}).config,
        nodeId: "n1",
        claimer: "n1/1",
        dispatcher: {} as Dispatcher,
        log: silentLogger,
      },
      new ProducerSessions(),
    );
    await checker.start();
    while (giveUpBatches < 3) await new Promise((r) => setTimeout(r, 5));
    const stopped = await Promise.race([
      checker.stop().then(() => "stopped"),
      new Promise((r) => setTimeout(() => r("still sweeping"), 2000)),
    ]);
    expect(stopped).toBe("stopped");
    const after = giveUpBatches;
    await new Promise((r) => setTimeout(r, 50));
    expect(giveUpBatches).toBe(after);
  });
});
