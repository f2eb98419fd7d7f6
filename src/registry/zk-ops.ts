/**
 * Promise wrappers around node-zookeeper-client operations. Every call is bounded by a timeout
 * (the library queues requests made while disconnected for ever), every failure becomes a
 * KiteqError(RegistryFailed) carrying the path, and NO_NODE / NODE_EXISTS are turned into
 * return values where the caller usually expects them.
 */
import zookeeper, { type Client, type Stat, type Watcher, type ZkException } from "node-zookeeper-client";
import { ErrorCode, KiteqError } from "../errors.js";

/** Default bound of one operation. */
export const ZK_OP_TIMEOUT_MS = 10_000;

/** Per-call options. */
export interface ZkOpOptions {
  /** Give up (RegistryFailed) after this long; the request may still run later on the server. */
  timeoutMs?: number;
}

/** Options of {@link zkCreate}. */
export interface ZkCreateOptions extends ZkOpOptions {
  data?: Buffer | string;
  /** Ephemeral (removed with the session) instead of persistent. Parents are always persistent. */
  ephemeral?: boolean;
}

/** The ZooKeeper error code behind a failure (e.g. `zookeeper.Exception.NO_NODE`), if any. */
export function zkErrorCode(err: unknown): number | undefined {
  if (err instanceof KiteqError) {
    const code = err.context.zkCode;
    return typeof code === "number" ? code : undefined;
  }
  if (typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "number") {
    return (err as { code: number }).code;
  }
  return undefined;
}

/** True when `err` means the session is gone for good (a new client is needed). */
export function isSessionExpired(err: unknown): boolean {
  return zkErrorCode(err) === zookeeper.Exception.SESSION_EXPIRED;
}

/**
 * Create `path` (persistent parents are created as needed). Resolves "exists" when the node is
 * already there, whatever its owner; callers that care check {@link zkExists}'s ephemeralOwner.
 */
export async function zkCreate(
  client: Client,
  path: string,
  options: ZkCreateOptions = {},
): Promise<"created" | "exists"> {
  const data = options.data === undefined ? null : Buffer.from(options.data);
  const mode = options.ephemeral === true ? zookeeper.CreateMode.EPHEMERAL : zookeeper.CreateMode.PERSISTENT;
  const once = () =>
    call<"created" | "exists">("create", path, options, (done) =>
      client.create(path, data, mode, (error) => {
        if (error === null) done(null, "created");
        else if (error.getCode() === zookeeper.Exception.NODE_EXISTS) done(null, "exists");
        else done(error);
      }),
    );
  try {
    return await once();
  } catch (err) {
    if (zkErrorCode(err) !== zookeeper.Exception.NO_NODE) throw err;
  }
  await zkEnsurePath(client, parentOf(path), options);
  return once();
}

/** Create `path` and its missing ancestors as empty persistent nodes (mkdir -p). */
export async function zkEnsurePath(client: Client, path: string, options: ZkOpOptions = {}): Promise<void> {
  let current = "";
  for (const part of path.split("/").filter((p) => p !== "")) {
    current += `/${part}`;
    const at = current;
    await call<void>("create", at, options, (done) =>
      client.create(at, null, zookeeper.CreateMode.PERSISTENT, (error) => {
        if (error === null || error.getCode() === zookeeper.Exception.NODE_EXISTS) done(null, undefined);
        else done(error);
      }),
    );
  }
}

/** Data and stat of `path`, or undefined when it does not exist. The watcher is set only if it does. */
export function zkGetData(
  client: Client,
  path: string,
  watcher?: Watcher,
  options: ZkOpOptions = {},
): Promise<{ data: Buffer; stat: Stat } | undefined> {
  return call("getData", path, options, (done) => {
    const cb = (error: ZkException | null, data: Buffer | null | undefined, stat: Stat) => {
      if (error === null) done(null, { data: data ?? Buffer.alloc(0), stat });
      else if (error.getCode() === zookeeper.Exception.NO_NODE) done(null, undefined);
      else done(error);
    };
    if (watcher === undefined) client.getData(path, cb);
    else client.getData(path, watcher, cb);
  });
}

/** Child names of `path`, or undefined when it does not exist. The watcher is set only if it does. */
export function zkGetChildren(
  client: Client,
  path: string,
  watcher?: Watcher,
  options: ZkOpOptions = {},
): Promise<string[] | undefined> {
  return call("getChildren", path, options, (done) => {
    const cb = (error: ZkException | null, children: string[]) => {
      if (error === null) done(null, children);
      else if (error.getCode() === zookeeper.Exception.NO_NODE) done(null, undefined);
      else done(error);
    };
    if (watcher === undefined) client.getChildren(path, cb);
    else client.getChildren(path, watcher, cb);
  });
}

/**
 * Stat of `path`, or undefined when it does not exist. A watcher fires on creation, deletion or
 * data change (it is set in both cases).
 */
export function zkExists(
  client: Client,
  path: string,
  watcher?: Watcher,
  options: ZkOpOptions = {},
): Promise<Stat | undefined> {
  return call("exists", path, options, (done) => {
    const cb = (error: ZkException | null, stat: Stat | null) => {
      if (error === null) done(null, stat ?? undefined);
      else done(error);
    };
    if (watcher === undefined) client.exists(path, cb);
    else client.exists(path, watcher, cb);
  });
}

/** Delete `path` (any version). Resolves false when it did not exist. */
export function zkRemove(client: Client, path: string, options: ZkOpOptions = {}): Promise<boolean> {
  return call("remove", path, options, (done) =>
    client.remove(path, -1, (error) => {
      if (error === null) done(null, true);
      else if (error.getCode() === zookeeper.Exception.NO_NODE) done(null, false);
      else done(error);
    }),
  );
}

/** Replace the data of `path` (any version). Resolves undefined when it does not exist. */
export function zkSetData(
  client: Client,
  path: string,
  data: Buffer | string,
  options: ZkOpOptions = {},
): Promise<Stat | undefined> {
  const bytes = Buffer.from(data);
  return call("setData", path, options, (done) =>
    client.setData(path, bytes, -1, (error, stat) => {
      if (error === null) done(null, stat);
      else if (error.getCode() === zookeeper.Exception.NO_NODE) done(null, undefined);
      else done(error);
    }),
  );
}

/** Parent path of `path` ("/" for a top-level node). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

type Done<T> = (error: ZkException | Error | null, value?: T) => void;

/** Run one callback-style operation with a timeout, mapping errors to KiteqError. */
function call<T>(op: string, path: string, options: ZkOpOptions, run: (done: Done<T>) => void): Promise<T> {
  const timeoutMs = options.timeoutMs ?? ZK_OP_TIMEOUT_MS;
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      reject(
        new KiteqError(ErrorCode.RegistryFailed, `ZooKeeper ${op} ${path} timed out after ${timeoutMs} ms`, {
          path,
          op,
        }),
      );
    }, timeoutMs);
    const done: Done<T> = (error, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error === null) resolve(value as T);
      else reject(toRegistryError(error, op, path));
    };
    try {
      run(done);
    } catch (err) {
      // The library asserts on bad arguments (invalid path, oversized data) synchronously.
      done(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

function toRegistryError(error: ZkException | Error, op: string, path: string): KiteqError {
  const zkCode =
    typeof (error as Partial<ZkException>).code === "number" ? (error as ZkException).code : undefined;
  const name = zkCode === undefined ? error.message : (error as ZkException).getName();
  return new KiteqError(
    ErrorCode.RegistryFailed,
    `ZooKeeper ${op} ${path} failed: ${name}`,
    zkCode === undefined ? { path, op } : { path, op, zkCode },
    { cause: error },
  );
}
