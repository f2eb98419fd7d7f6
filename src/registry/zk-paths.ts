/**
 * KiteQ's ZooKeeper layout, unchanged (see kiteq-wire.md), so KiteQ clients and tools find
 * kiteq-pg brokers and bindings where they expect them.
 */
import { ErrorCode, KiteqError } from "../errors.js";

/** Root of every KiteQ node. */
export const KITEQ_ROOT = "/kiteq";
/** Parent of the ephemeral `{ip:port}` nodes of live brokers. */
export const ALIVE_SERVERS_PATH = `${KITEQ_ROOT}/alive_servers`;
/** Parent of the persistent `{ip:port}` nodes of every broker ever seen. */
export const ALL_SERVERS_PATH = `${KITEQ_ROOT}/all_servers`;
/** Suffix of a group's binding node under `/kiteq/sub/{topic}`. */
export const BIND_SUFFIX = "-bind";

/** `/kiteq/server/{topic}`: ephemeral children `{ip:port}`, one per broker serving the topic. */
export function serverTopicPath(topic: string): string {
  return `${KITEQ_ROOT}/server/${segment(topic, "topic")}`;
}

/** `/kiteq/server/{topic}/{ip:port}` (ephemeral). */
export function serverPath(topic: string, address: string): string {
  return `${serverTopicPath(topic)}/${segment(address, "address")}`;
}

/** `/kiteq/alive_servers/{ip:port}` (ephemeral). */
export function aliveServerPath(address: string): string {
  return `${ALIVE_SERVERS_PATH}/${segment(address, "address")}`;
}

/** `/kiteq/all_servers/{ip:port}` (persistent). */
export function allServerPath(address: string): string {
  return `${ALL_SERVERS_PATH}/${segment(address, "address")}`;
}

/** `/kiteq/pub/{topic}/{groupId}/{ip:port}`: written by producers (KiteQ clients), never by the broker. */
export function publisherPath(topic: string, groupId: string, address: string): string {
  return `${KITEQ_ROOT}/pub/${segment(topic, "topic")}/${segment(groupId, "groupId")}/${segment(address, "address")}`;
}

/** `/kiteq/sub` (children: topics). */
export const SUB_ROOT_PATH = `${KITEQ_ROOT}/sub`;

/** `/kiteq/sub/{topic}` (children: `{groupId}-bind`). */
export function subTopicPath(topic: string): string {
  return `${SUB_ROOT_PATH}/${segment(topic, "topic")}`;
}

/** `/kiteq/sub/{topic}/{groupId}-bind` (data: JSON array of bindings). */
export function bindPath(topic: string, groupId: string): string {
  return `${subTopicPath(topic)}/${segment(groupId, "groupId")}${BIND_SUFFIX}`;
}

/** The groupId of a `{groupId}-bind` child name, or undefined for any other name. */
export function groupOfBindNode(name: string): string | undefined {
  return name.endsWith(BIND_SUFFIX) && name.length > BIND_SUFFIX.length
    ? name.slice(0, -BIND_SUFFIX.length)
    : undefined;
}

/**
 * Record that ZooKeeper holds the bindings of the kiteq-pg store `storeId` (shard 0's uuid):
 * outside KiteQ's /kiteq tree, which KiteQ's own brokers and clients read.
 */
export function storeMarkerPath(storeId: string): string {
  return `/kiteq-pg/stores/${segment(storeId, "storeId")}`;
}

/** A broker address as KiteQ writes it: `ip:port` (a host name is accepted too). */
export function isServerAddress(address: string): boolean {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(address);
  return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
}

/** One path segment: non-empty, no "/", not "." or "..", no control characters. */
function segment(value: string, what: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (value === "" || value === "." || value === ".." || /[/\u0000-\u001f\u007f]/.test(value)) {
    throw new KiteqError(
      ErrorCode.RegistryFailed,
      `invalid ${what} for a ZooKeeper path: ${JSON.stringify(value)}`,
      {
        [what]: value,
      },
    );
  }
  return value;
}
