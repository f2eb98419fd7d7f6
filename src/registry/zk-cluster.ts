/**
 * ZooKeeper membership of a broker node (issue 6), on {@link ZooKeeperRegistry}:
 *
 * - registers this node under KiteQ's paths (`/kiteq/server/{topic}/{ip:port}`, alive_servers);
 *   a ZooKeeper that does not answer makes start fail with RegistryFailed after a bounded wait;
 * - mirrors every binding of `/kiteq/sub` into the bindings table at start and after every
 *   outage, and each group's change as it is reported (binding-mirror.ts); a ZooKeeper that has
 *   no record of the store (new, or restarted without its data) first gets the store's
 *   persistent subscriptions back (ZooKeeperRegistry's `store`);
 * - when another node leaves the live set, releases its claims (and, through the optional hook,
 *   its pending transactions) at once instead of after its lease (invariant 4; fencing,
 *   invariant 6, keeps a node that is in fact alive from undoing the takeover);
 * - while this node's own session is lost it goes on claiming: no node takes over the work of a
 *   node that holds its PostgreSQL liveness lock (DECLARE_NODE_DEAD), so a ZooKeeper outage
 *   stops nothing (it paused every node's claims for the whole outage, and 16-30 s after);
 * - writes nothing under `/kiteq/pub`: producers register themselves there, as with KiteQ
 *   (the broker's own record of connected producers, for 2PC check-backs, is src/tx/producers.ts).
 */
import { ErrorCode, KiteqError, toKiteqError } from "../errors.js";
import { listBindings } from "../store/bindings.js";
import { BindingMirror } from "./binding-mirror.js";
import type { ClusterDeps, ClusterMembership } from "./cluster.js";
import { isServerAddress } from "./zk-paths.js";
import { ZooKeeperRegistry } from "./zookeeper.js";

/** ZooKeeper settings of the node (config.registry when its kind is "zookeeper"). */
export interface ZooKeeperClusterSettings {
  readonly hosts: readonly string[];
  readonly sessionTimeoutMs: number;
}

/** Attempts to release a gone node's claims (the lease takes over if all fail). */
const RELEASE_ATTEMPTS = 5;
const RELEASE_RETRY_MS = 500;

/** Register this node in ZooKeeper and keep the bindings table and claims in step with it. */
export async function startZooKeeperCluster(
  deps: ClusterDeps,
  settings: ZooKeeperClusterSettings,
): Promise<ClusterMembership> {
  const { config, dispatcher } = deps;
  const address = advertisedAddress(deps.address, config.nodeId);
  const log = deps.log.child({ registry: "zookeeper", address });
  // A node id other than the address changes nothing for takeover (the PostgreSQL liveness lock
  // decides it: 0.76 s for such a node killed in a walkthrough); it was warned about as if its
  // claims then waited for their lease.
  if (address !== config.nodeId) {
    log.info(
      { nodeId: config.nodeId },
      "registers in ZooKeeper under its address; its node id names it in the history",
    );
  }
  const registry = new ZooKeeperRegistry({
    connectString: `zk://${settings.hosts.join(",")}`,
    sessionTimeoutMs: settings.sessionTimeoutMs,
    logger: deps.log,
    store:
      deps.storeId === undefined
        ? undefined
        : { storeId: deps.storeId, mirroredBindings: () => listBindings(deps.pool, "zk") },
  });
  const mirror = new BindingMirror({
    pool: deps.pool,
    log,
    listAll: () => registry.listBindings(),
    canRead: () => registry.isRegistered(),
  });
  let started = false;
  let stopping = false;
  /** The mirror's writesEnded when syncGroup last told its caller to reload (see syncGroup). */
  let reloadedAtWrites = -1;
  let inOutage = false;
  const releasing = new Set<Promise<void>>();

  const releaseNode = async (gone: string): Promise<void> => {
    // One node at a time declares it gone (the maintenance node); the others claim when its NOTIFY comes.
    if (deps.isMaintenanceNode !== undefined && !deps.isMaintenanceNode()) {
      dispatcher.requestClaim();
      return;
    }
    const steps: [string, () => Promise<unknown>][] = [
      [
        "claims",
        async () => {
          // Its current run is declared dead (unless it still holds its liveness lock: a node
          // cut off from ZooKeeper only, or paused): any node's next claim takes its deliveries.
          const declared = await dispatcher.takeOverNode(gone);
          if (declared === 0) {
            log.info(
              { gone },
              "the node that left ZooKeeper still holds its PostgreSQL liveness lock: not declared dead (its deliveries are taken if its lock goes, or when their leases run out)",
            );
          } else {
            log.info(
              { gone },
              "the node that left ZooKeeper is declared dead: its deliveries are claimed again now",
            );
          }
          dispatcher.requestClaim();
        },
      ],
    ];
    const releaseTx = deps.releaseTransactionsOfNode;
    if (releaseTx !== undefined) steps.push(["transactions", () => releaseTx(gone)]);
    for (const [what, step] of steps) {
      for (let attempt = 1; !stopping; attempt++) {
        try {
          await step();
          break;
        } catch (err) {
          const e = toKiteqError(err, { node: gone });
          const last = attempt >= RELEASE_ATTEMPTS;
          log[last ? "error" : "warn"](
            { code: e.code, err: e.message, gone, attempt },
            last
              ? `releasing the ${what} of a gone node failed; its lease will free them`
              : `releasing the ${what} of a gone node failed; retrying`,
          );
          if (last) break;
          await new Promise((resolve) => setTimeout(resolve, RELEASE_RETRY_MS * attempt));
        }
      }
    }
  };

  const start = async (): Promise<void> => {
    await registry.start(address, config.topics, {
      bindingsChanged: (topic, groupId, bindings) => {
        // Before the first resync (queued right after start) everything is read anyway.
        if (started && !stopping) mirror.groupChanged(topic, groupId, bindings);
      },
      serverGone: (gone) => {
        if (stopping) return;
        log.info({ gone }, "broker node left the live set");
        const p = releaseNode(gone).finally(() => releasing.delete(p));
        releasing.add(p);
      },
      serverJoined: (joined) => log.info({ joined }, "broker node joined the live set"),
      outage: (down) => {
        if (stopping || down === inOutage) return;
        inOutage = down;
        if (down) {
          log.warn(
            "ZooKeeper session lost: registering again; deliveries go on (liveness is the PostgreSQL lock)",
          );
        } else {
          log.info("registered in ZooKeeper again");
          if (started) void mirror.resync();
        }
      },
    });
  };

  // A stop requested while the first connect still waits (ZooKeeper unreachable: up to 15 s).
  const onAbort = () => void registry.stop().catch(() => undefined);
  deps.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    deps.signal?.throwIfAborted();
    await start();
    deps.signal?.throwIfAborted();
  } catch (err) {
    await registry.stop().catch(() => undefined);
    if (deps.signal?.aborted) throw deps.signal.reason;
    const e = toKiteqError(err, {}, ErrorCode.RegistryFailed);
    throw new KiteqError(
      e.code,
      `cannot register this node (${address}) in ZooKeeper: ${e.message}`,
      { ...e.context, node: address },
      { cause: err },
    );
  }
  deps.signal?.removeEventListener("abort", onAbort);
  started = true;
  if (!(await mirror.resync())) {
    stopping = true;
    await mirror.stop();
    await registry.stop();
    throw new KiteqError(
      ErrorCode.RegistryFailed,
      "cannot mirror the ZooKeeper bindings into the bindings table (see the log)",
      { node: address },
    );
  }

  return {
    isRegistered: () => registry.isRegistered(),
    async syncGroup(groupId: string): Promise<boolean> {
      // Cut off from ZooKeeper: nothing to re-read, and a heartbeat must not wait for the attempt
      // (its answer would come only at the 2 s bound).
      if (!started || stopping || !registry.isRegistered()) return false;
      const changed = await registry.syncGroup(groupId);
      // The watch may have reported the change before this read (`changed` is then false) while
      // its write still waits: every write queued is awaited, and the caller reloads after any
      // write ended since its last reload from here (a message sent right after was owed to no
      // group once, in a full run).
      await mirror.idle();
      const ended = mirror.writesEnded;
      const reload = changed || ended !== reloadedAtWrites;
      reloadedAtWrites = ended;
      return reload;
    },
    async stop(): Promise<void> {
      if (stopping) return;
      stopping = true;
      await registry.stop();
      await mirror.stop();
      await Promise.allSettled([...releasing]);
    },
  };
}

/**
 * The address registered for this node: where it listens, or, when it listens on a wildcard
 * host (0.0.0.0, ::), its node id (by default the machine's name and the port), which must then
 * be host:port.
 */
export function advertisedAddress(listening: string, nodeId: string): string {
  const m = /^(.*):(\d+)$/.exec(listening);
  const host = m?.[1] ?? "";
  const wildcard = host === "0.0.0.0" || host === "::" || host === "[::]" || host === "";
  if (!wildcard) return host.includes(":") && !host.startsWith("[") ? `[${host}]:${m?.[2]}` : listening;
  if (!isServerAddress(nodeId)) {
    throw new KiteqError(
      ErrorCode.ConfigInvalid,
      `listening on ${listening}: set a node id of the form host:port that clients can reach (it is registered in ZooKeeper), got "${nodeId}"`,
      { key: "nodeId" },
    );
  }
  return nodeId;
}
