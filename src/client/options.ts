/**
 * Checks of createProducer's and createConsumer's options as given at run time: a plain
 * JavaScript caller's missing `topics` was a bare TypeError, and a missing `groupId` a 10 s wait
 * ending in KQ_NO_BROKER. Each problem is KQ_CONFIG_INVALID at once, naming the option.
 */
import { ErrorCode, KiteqError } from "../errors.js";

/** Longest delay a Node timer takes (a longer one fires after 1 ms). */
const MAX_TIMER_MS = 2_147_483_647;

type Caller = "createProducer" | "createConsumer";

/** BindingSpec's bindType values. */
const BIND_TYPES: readonly string[] = ["direct", "regx", "fanout"];

function describe(value: unknown): string {
  if (value === undefined || value === null) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return `a ${typeof value}`;
}

function invalid(caller: Caller, key: string, why: string): KiteqError {
  return new KiteqError(ErrorCode.ConfigInvalid, `${caller}: ${key} ${why}`, { key });
}

/** A group or topic name: a non-empty string without "/" (it is a ZooKeeper path segment). */
function checkName(caller: Caller, key: string, value: unknown): void {
  if (value === undefined || value === null) throw invalid(caller, key, "is required");
  if (typeof value !== "string" || value.trim() === "") {
    throw invalid(caller, key, `must be a non-empty string, got ${describe(value)}`);
  }
  if (value.includes("/")) throw invalid(caller, key, `must not contain "/", got ${describe(value)}`);
}

function checkRegistry(caller: Caller, value: unknown): void {
  const ok =
    (typeof value === "string" && value.trim() !== "") ||
    (Array.isArray(value) && value.length > 0 && value.every((a) => typeof a === "string"));
  if (value === undefined || value === null) {
    throw invalid(caller, "registry", 'is required ("zk://host:port", a registry YAML file or "host:port")');
  }
  if (!ok) {
    throw invalid(
      caller,
      "registry",
      `must be "zk://host:port", a registry YAML file, "host:port" addresses or an array of them, got ${describe(value)}`,
    );
  }
}

/** Optional numbers: [key, least allowed, whether a whole number]. */
type NumberRule = readonly [key: string, min: number, integer?: boolean];

function checkNumbers(caller: Caller, options: Record<string, unknown>, rules: readonly NumberRule[]): void {
  for (const [key, min, integer] of rules) {
    const value = options[key];
    if (value === undefined) continue;
    const max = key.endsWith("Ms") ? MAX_TIMER_MS : Number.MAX_SAFE_INTEGER;
    if (
      typeof value !== "number" ||
      !Number.isFinite(value) ||
      value < min ||
      value > max ||
      (integer === true && !Number.isInteger(value))
    ) {
      const kind = integer === true ? "an integer" : "a number";
      throw invalid(caller, key, `must be ${kind} from ${min} to ${max}, got ${describe(value)}`);
    }
  }
}

function checkCommon(caller: Caller, options: unknown): Record<string, unknown> {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new KiteqError(
      ErrorCode.ConfigInvalid,
      `${caller}: options must be an object, got ${describe(options)}`,
    );
  }
  const o = options as Record<string, unknown>;
  checkRegistry(caller, o.registry);
  checkName(caller, "groupId", o.groupId);
  if (o.secretKey !== undefined && typeof o.secretKey !== "string") {
    throw invalid(caller, "secretKey", `must be a string, got ${describe(o.secretKey)}`);
  }
  if (o.logger !== undefined && (typeof o.logger !== "object" || o.logger === null)) {
    throw invalid(caller, "logger", `must be a pino logger, got ${describe(o.logger)}`);
  }
  checkNumbers(caller, o, [
    // 0 would ping without pause.
    ["heartbeatMs", 1],
    ["requestTimeoutMs", 1],
    ["connectTimeoutMs", 0],
    ["zkSessionTimeoutMs", 1],
  ]);
  return o;
}

/** Throw KQ_CONFIG_INVALID naming the first missing or invalid option of createProducer. */
export function checkProducerOptions(options: unknown): void {
  const o = checkCommon("createProducer", options);
  if (o.topics === undefined || o.topics === null) {
    throw invalid("createProducer", "topics", "is required (the topics this producer publishes to)");
  }
  if (!Array.isArray(o.topics)) {
    throw invalid("createProducer", "topics", `must be an array of topic names, got ${describe(o.topics)}`);
  }
  if (o.topics.length === 0) throw invalid("createProducer", "topics", "must name at least one topic");
  o.topics.forEach((t, i) => {
    checkName("createProducer", `topics[${i}]`, t);
  });
  checkNumbers("createProducer", o, [
    // No attempt starts with less than 100 ms left (producer.ts MIN_ATTEMPT_MS): below it every
    // send was refused unsent, as "no broker of topic ... reachable".
    ["sendTimeoutMs", 100],
    ["compressAboveBytes", 0, true],
  ]);
}

/** Throw KQ_CONFIG_INVALID naming the first missing or invalid option of createConsumer. */
export function checkConsumerOptions(options: unknown): void {
  const o = checkCommon("createConsumer", options);
  if (o.bindings === undefined || o.bindings === null) {
    throw invalid(
      "createConsumer",
      "bindings",
      "is required (an array of { topic, messageType }; [] with an address list or a YAML file)",
    );
  }
  if (!Array.isArray(o.bindings)) {
    throw invalid("createConsumer", "bindings", `must be an array, got ${describe(o.bindings)}`);
  }
  o.bindings.forEach((b: unknown, i) => {
    if (typeof b !== "object" || b === null || Array.isArray(b)) {
      throw invalid("createConsumer", `bindings[${i}]`, `must be an object, got ${describe(b)}`);
    }
    const spec = b as Record<string, unknown>;
    checkName("createConsumer", `bindings[${i}].topic`, spec.topic);
    // A bindType of another spelling ("Regx", "FANOUT", 1) became a direct binding in silence.
    if (spec.bindType !== undefined && !BIND_TYPES.includes(spec.bindType as string)) {
      throw invalid(
        "createConsumer",
        `bindings[${i}].bindType`,
        `must be "direct", "regx" or "fanout", got ${describe(spec.bindType)}`,
      );
    }
    if (spec.messageType !== undefined && typeof spec.messageType !== "string") {
      throw invalid(
        "createConsumer",
        `bindings[${i}].messageType`,
        `must be a string, got ${describe(spec.messageType)}`,
      );
    }
    // Fanout takes every messageType: one given with it was dropped in silence (`bind add` refuses it too).
    if (spec.bindType === "fanout" && spec.messageType !== undefined && spec.messageType !== "*") {
      throw invalid(
        "createConsumer",
        `bindings[${i}].messageType`,
        `must be omitted with bindType "fanout" (a fanout binding takes every messageType), got ${describe(spec.messageType)}`,
      );
    }
    if (spec.persistent !== undefined && typeof spec.persistent !== "boolean") {
      throw invalid(
        "createConsumer",
        `bindings[${i}].persistent`,
        `must be true or false, got ${describe(spec.persistent)}`,
      );
    }
  });
  if (o.handler !== undefined && typeof o.handler !== "function") {
    throw invalid("createConsumer", "handler", `must be a function, got ${describe(o.handler)}`);
  }
  checkNumbers("createConsumer", o, [
    ["concurrency", 1, true],
    ["maxPending", 0, true],
    ["maxWaitMs", 1],
    ["closeTimeoutMs", 0],
    ["warmupSec", 0],
  ]);
}
