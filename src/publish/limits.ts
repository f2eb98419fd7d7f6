/**
 * What a client may send in one publish, and why these values (README, "Limits on what a client
 * may send"). Pure constants and types: the config (src/config) and the validation share them.
 */

/** Limits of a publish's header, configurable (maxNameBytes, maxProperties, maxPropertiesBytes). */
export interface PublishLimits {
  /** Longest topic, messageType and groupId, in UTF-8 bytes. */
  readonly maxNameBytes: number;
  /** Most properties in one header. */
  readonly maxProperties: number;
  /** Most bytes (UTF-8) of all property keys and values of one header together. */
  readonly maxPropertiesBytes: number;
}

/**
 * Defaults: 255 bytes is what KiteQ's MySQL store gives these columns (varchar(255)) and far
 * above any real topic or group name; 64 properties and 64 KiB of them leave room for tracing
 * headers and routing keys while one header cannot carry megabytes of JSON (bodies are for that).
 */
export const DEFAULT_PUBLISH_LIMITS: PublishLimits = Object.freeze({
  maxNameBytes: 255,
  maxProperties: 64,
  maxPropertiesBytes: 64 * 1024,
});

/**
 * Highest maxNameBytes an operator may configure: topic, messageType and groupId are in
 * PostgreSQL indexes, whose entries cannot exceed about 2.7 kB; 1,024 keeps well below.
 */
export const MAX_NAME_BYTES = 1024;

/**
 * createTime (unix seconds) accepted: 0 (unset: the broker's receive time) or from 2000-01-01
 * up to a year ahead of the broker's clock. Earlier is a wrong unit or garbage; further ahead is
 * milliseconds sent as seconds (1.7e12). Within that range a producer's clock may be as wrong as
 * it likes: createTime is data, the history is partitioned by the broker's receive time.
 */
export const MIN_CREATE_TIME_SECONDS = 946_684_800;
export const MAX_CREATE_TIME_AHEAD_SECONDS = 366 * 86_400;
