// Preloaded into a broker process (NODE_OPTIONS=--import=...): on SIGUSR2 its event loop stops
// for KQ_TEST_STALL_MS (default 3000), as a node paused, frozen or starved of CPU would.
const stallMs = Number(process.env.KQ_TEST_STALL_MS ?? 3000);
process.on("SIGUSR2", () => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMs);
});
