// A child process for test/unit/bench/clock.test.ts: answers each IPC message with its nowMs().
import { nowMs } from "../../src/bench/stats.js";

process.on("message", () => process.send?.(nowMs()));
process.send?.("ready");
