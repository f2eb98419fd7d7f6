/**
 * A listener that cannot bind, as an operator reads it: which flag, which address, and what to do.
 */
import net from "node:net";
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

/**
 * Bind `host:port` for a moment and let go, so that an address in use is said before the node
 * starts its store (it initialised a PostgreSQL, ran migrations and took the maintenance lead
 * first, then failed). Port 0 (any free port) cannot be in use: nothing to check. The real
 * listen still reports what happens between the two.
 */
export async function checkListenable(host: string, port: number, flag: string): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", (err) => reject(listenFailure(err, flag, `${host}:${port}`)));
      probe.listen({ host, port, exclusive: true }, () => resolve());
    });
  } finally {
    await new Promise<void>((resolve) => (probe.listening ? probe.close(() => resolve()) : resolve()));
  }
}
