// Preloaded into a broker process (NODE_OPTIONS=--import=...): its Date runs KQ_TEST_CLOCK_OFFSET_MS
// ahead (negative: behind), as a node whose time sync failed. performance.now() is left alone.
const offset = Number(process.env.KQ_TEST_CLOCK_OFFSET_MS ?? 0);
const RealDate = Date;
class ShiftedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + offset);
    else super(...args);
  }
  static now() {
    return RealDate.now() + offset;
  }
}
globalThis.Date = ShiftedDate;
