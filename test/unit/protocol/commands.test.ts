import { describe, expect, it } from "vitest";
import { CommandType, commandName, isKnownCommand, ResponseStatus } from "../../../src/protocol/index.js";

describe("commands", () => {
  it("has KiteQ's command codes", () => {
    expect(CommandType).toEqual({
      HEARTBEAT: 1,
      CONN_META: 2,
      CONN_AUTH: 3,
      MESSAGE_STORE_ACK: 4,
      DELIVER_ACK: 5,
      TX_ACK: 6,
      BYTES_MESSAGE: 17,
      STRING_MESSAGE: 18,
    });
  });

  it("knows exactly those codes", () => {
    const known = [];
    for (let n = -1; n <= 256; n++) if (isKnownCommand(n)) known.push(n);
    expect(known).toEqual([1, 2, 3, 4, 5, 6, 0x11, 0x12]);
  });

  it("names known and unknown codes", () => {
    expect(commandName(0x11)).toBe("BYTES_MESSAGE");
    expect(commandName(CommandType.TX_ACK)).toBe("TX_ACK");
    expect(commandName(0x07)).toBe("UNKNOWN(0x07)");
    expect(commandName(0xab)).toBe("UNKNOWN(0xab)");
  });

  it("has KiteQ's response status codes", () => {
    expect(ResponseStatus).toEqual({ SUCCESS: 200, FAILURE: 500, TIMEOUT: 501 });
  });
});
