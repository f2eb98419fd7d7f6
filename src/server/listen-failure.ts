/**
 * A listener that cannot bind, as an operator reads it: which flag, which address, and what to do.
 */
import { ErrorCode, KiteqError } from "../errors.js";

const WHY: Readonly<Record<string, string>> = {
  EADDRINUSE: "the address is in use by another process (another kiteq-pg node?): choose another port",
  EACCES: "permission denied (a port below 1024 needs privileges): choose a port above 1023",
  EADDRNOTAVAIL: "no network interface of this machine has that address",
};

/** `err` from listen() on `address`, configured by `flag` (e.g. "--bind"), as ConfigInvalid. */
export function listenFailure(err: unknown, flag: string, address: string): KiteqError {
  const code = (err as { code?: unknown } | null)?.code;
  const why =
    (typeof code === "string" ? WHY[code] : undefined) ?? (err instanceof Error ? err.message : String(err));
  return new KiteqError(
    ErrorCode.ConfigInvalid,
    `cannot listen on ${address} (${flag}): ${why}`,
    {},
    {
      cause: err,
    },
  );
}
