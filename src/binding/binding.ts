/**
 * The binding model: a consumer group's subscription to a topic and message type, in KiteQ's
 * own JSON format (the data of ZooKeeper's `/kiteq/sub/{topic}/{groupId}-bind` nodes).
 */
import { ErrorCode, KiteqError } from "../errors.js";
import { compileGoRegexp, type GoRegexp } from "./go-regexp.js";

/** How a binding selects the message types of its topic (KiteQ's numbers, kept on the wire). */
export const BindType = {
  /** messageType must equal the binding's messageType. */
  Direct: 0,
  /** The binding's messageType is a Go regular expression searched in the message's messageType. */
  Regx: 1,
  /** Every messageType of the topic; the binding's messageType is "*". */
  Fanout: 2,
} as const;

export type BindType = (typeof BindType)[keyof typeof BindType];

/** A consumer group's subscription; immutable once created (see createBinding). */
export interface Binding {
  readonly groupId: string;
  readonly topic: string;
  readonly messageType: string;
  readonly bindType: BindType;
  readonly version: string;
  /**
   * The group's delivery rate limit in messages per second (at least 1). The broker applies at
   * most its --max-watermark (KiteQ's 6,000 by default) of it.
   */
  readonly watermark: number;
  /** Keep receiving (stored for later) while no consumer of the group is online. */
  readonly persistent: boolean;
}

/** Watermark used when a binding gives none (or 0 or less, which is what Go decodes "none" to). */
export const DEFAULT_WATERMARK = 6000;
/** KiteQ's cap on a group's watermark: the default of the broker's --max-watermark. */
export const KITEQ_MAX_WATERMARK = 6000;
/** Largest watermark a binding may carry (Go's int32, as KiteQ's binding JSON decodes it). */
export const MAX_BINDING_WATERMARK = 2_147_483_647;
/**
 * `persistent` when a binding omits it: false, as in KiteQ (Go decodes a missing bool as false).
 * KiteQ clients always write the field, so this only matters for hand-written JSON or YAML.
 */
export const DEFAULT_PERSISTENT = false;
/** The version KiteQ's binding constructors write. */
export const BIND_VERSION = "1.0.0";
/** The messageType of every Fanout binding. */
export const FANOUT_MESSAGE_TYPE = "*";

/** What createBinding takes: the Binding fields, with KiteQ's defaults for the optional ones. */
export interface BindingInput {
  groupId: string;
  topic: string;
  /** Required for Direct and Regx; always "*" for Fanout. */
  messageType?: string;
  bindType: BindType;
  /** Default "". */
  version?: string;
  /** Default DEFAULT_WATERMARK; 0 or less means the default; the broker caps it (--max-watermark). */
  watermark?: number;
  /** Default DEFAULT_PERSISTENT. */
  persistent?: boolean;
}

/** Create a validated, frozen binding; a Regx pattern is compiled here. Throws BindingInvalid. */
export function createBinding(input: BindingInput): Binding {
  return bindingFromRecord(input as unknown as Record<string, unknown>, "binding", {});
}

/** KiteQ's `Bind_Direct`: the group receives messages of exactly this messageType. */
export function directBinding(
  groupId: string,
  topic: string,
  messageType: string,
  watermark: number,
  persistent: boolean,
): Binding {
  return createBinding({
    groupId,
    topic,
    messageType,
    bindType: BindType.Direct,
    version: BIND_VERSION,
    watermark,
    persistent,
  });
}

/** KiteQ's `Bind_Regx`: messageType is a Go regular expression. */
export function regxBinding(
  groupId: string,
  topic: string,
  pattern: string,
  watermark: number,
  persistent: boolean,
): Binding {
  return createBinding({
    groupId,
    topic,
    messageType: pattern,
    bindType: BindType.Regx,
    version: BIND_VERSION,
    watermark,
    persistent,
  });
}

/** KiteQ's `Bind_Fanout`: every messageType of the topic. */
export function fanoutBinding(
  groupId: string,
  topic: string,
  watermark: number,
  persistent: boolean,
): Binding {
  return createBinding({
    groupId,
    topic,
    bindType: BindType.Fanout,
    version: BIND_VERSION,
    watermark,
    persistent,
  });
}

/**
 * Parse the data of a `-bind` node: a JSON array of KiteQ binding objects. Empty data and
 * `null` are no bindings (KiteQ treats an empty node so). Unknown keys are ignored. Defaults:
 * version "", watermark DEFAULT_WATERMARK, persistent DEFAULT_PERSISTENT. Throws BindingInvalid
 * naming the element and field, e.g. `bindings[1].watermark: must be an integer, got "x"`.
 * With `refused`, a Regx binding whose pattern Go refuses is left out and described there
 * instead of failing the whole node (the other bindings stay).
 */
export function parseBindingsJson(text: string, refused?: RefusedPattern[]): Binding[] {
  if (text.trim() === "") return [];
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new KiteqError(
      ErrorCode.BindingInvalid,
      `bindings: not valid JSON: ${(err as Error).message}`,
      {},
      { cause: err },
    );
  }
  if (value === null) return [];
  if (!Array.isArray(value)) {
    throw new KiteqError(ErrorCode.BindingInvalid, `bindings: expected a JSON array, got ${describe(value)}`);
  }
  const bindings: Binding[] = [];
  value.forEach((item: unknown, i) => {
    const label = `bindings[${i}]`;
    if (!isRecord(item)) {
      throw new KiteqError(ErrorCode.BindingInvalid, `${label}: expected an object, got ${describe(item)}`, {
        index: i,
      });
    }
    try {
      bindings.push(bindingFromRecord(item, label, { index: i }));
    } catch (err) {
      const r = refused === undefined ? undefined : refusedPattern(err);
      if (r === undefined) throw err;
      refused?.push(r);
    }
  });
  return bindings;
}

/** A Regx binding refused for its pattern alone (Go's regexp would not compile it). */
export interface RefusedPattern {
  readonly groupId: string | undefined;
  readonly topic: string | undefined;
  readonly pattern: string;
  /** The whole refusal, e.g. `bindings[1].messageType: invalid regular expression "(" ...`. */
  readonly error: KiteqError;
}

/**
 * The refused pattern when `err` is createBinding's refusal of a Regx pattern (and nothing
 * else), else undefined: registries skip such a binding and keep the others.
 */
export function refusedPattern(err: unknown): RefusedPattern | undefined {
  if (!(err instanceof KiteqError) || err.code !== ErrorCode.BindingInvalid) return undefined;
  const { pattern, groupId, topic } = err.context;
  if (typeof pattern !== "string") return undefined;
  return { groupId, topic, pattern, error: err };
}

/**
 * Serialise bindings exactly as KiteQ (Go's json.Marshal) does: a compact array of objects with
 * keys in the order groupId, topic, messageType, bindType, version, watermark, persistent.
 */
export function bindingsToJson(bindings: readonly Binding[]): string {
  return JSON.stringify(bindings.map(bindingRecord));
}

/** A binding as KiteQ's JSON holds it (bindType as KiteQ's number), keys in KiteQ's order. */
export function bindingRecord(b: Binding): {
  groupId: string;
  topic: string;
  messageType: string;
  bindType: number;
  version: string;
  watermark: number;
  persistent: boolean;
} {
  return {
    groupId: b.groupId,
    topic: b.topic,
    messageType: b.messageType,
    bindType: b.bindType,
    version: b.version,
    watermark: b.watermark,
    persistent: b.persistent,
  };
}

/** The name of a bind type as KiteQ's file registry writes it: "direct", "regx" or "fanout". */
export function bindTypeName(bindType: BindType): "direct" | "regx" | "fanout" {
  return bindType === BindType.Direct ? "direct" : bindType === BindType.Regx ? "regx" : "fanout";
}

/**
 * The compiled form of a Regx binding's pattern (Go's syntax and semantics in linear time, see
 * go-regexp.ts). Compiled once per distinct pattern and cached; `test` has no state. Throws
 * GoRegexpSyntaxError for a pattern Go refuses.
 */
export function messageTypeRegex(pattern: string): GoRegexp {
  let re = regexCache.get(pattern);
  if (re === undefined) {
    re = compileGoRegexp(pattern);
    if (regexCache.size >= REGEX_CACHE_LIMIT) {
      regexCache.delete(regexCache.keys().next().value as string);
    }
    regexCache.set(pattern, re);
  }
  return re;
}

/** Whether a binding selects a message of this topic and messageType (KiteQ's `matches`). */
export function bindingMatches(binding: Binding, topic: string, messageType: string): boolean {
  if (binding.topic !== topic) return false;
  switch (binding.bindType) {
    case BindType.Direct:
      return binding.messageType === messageType;
    case BindType.Regx:
      return messageTypeRegex(binding.messageType).test(messageType);
    case BindType.Fanout:
      return true;
  }
}

const REGEX_CACHE_LIMIT = 1024;
const regexCache = new Map<string, GoRegexp>();

/** Field parsing shared with the YAML registry, which is more lenient about scalar types. */
export interface FieldOptions {
  /** Accept numeric strings for watermark and yes/no/on/off strings for persistent. */
  lenientScalars?: boolean;
  /** Version to use when the record has none (JSON: "", file registry: BIND_VERSION). */
  defaultVersion?: string;
  /** Bind type when the record has none; without it, a missing bindType is an error. */
  defaultBindType?: BindType;
  /** Extra context for the error. */
  context?: Record<string, string | number>;
}

/**
 * Build a binding from an untyped record (JSON object or YAML mapping); `label` prefixes every
 * error message, e.g. "bindings[2]". Internal to src/binding (used by the file registry).
 */
export function bindingFromRecord(
  record: Record<string, unknown>,
  label: string,
  context: Record<string, string | number>,
  options: FieldOptions = {},
): Binding {
  const fail = (field: string, message: string): never => {
    throw new KiteqError(ErrorCode.BindingInvalid, `${label}.${field}: ${message}`, {
      ...context,
      ...options.context,
      field,
      groupId: typeof record.groupId === "string" ? record.groupId : undefined,
      topic: typeof record.topic === "string" ? record.topic : undefined,
    });
  };
  const groupId = pathSegment(record.groupId, "groupId", fail);
  const topic = pathSegment(record.topic, "topic", fail);
  const bindType = parseBindType(record.bindType, options.defaultBindType, fail);

  let messageType: string;
  if (bindType === BindType.Fanout) {
    messageType = FANOUT_MESSAGE_TYPE;
  } else {
    if (typeof record.messageType !== "string" || record.messageType === "") {
      fail(
        "messageType",
        record.messageType === undefined || record.messageType === null || record.messageType === ""
          ? "is required for a direct or regx binding (use fanout for every messageType)"
          : `must be a string, got ${describe(record.messageType)}`,
      );
    }
    messageType = record.messageType as string;
    if (bindType === BindType.Regx) {
      try {
        messageTypeRegex(messageType);
      } catch (err) {
        // context.pattern marks a refused Regx pattern: registries skip that binding alone.
        throw new KiteqError(
          ErrorCode.BindingInvalid,
          `${label}.messageType: invalid regular expression ${JSON.stringify(messageType)} (Go/RE2 syntax): ${(err as Error).message}`,
          {
            ...context,
            ...options.context,
            field: "messageType",
            groupId: typeof record.groupId === "string" ? record.groupId : undefined,
            topic: typeof record.topic === "string" ? record.topic : undefined,
            pattern: messageType,
          },
          { cause: err },
        );
      }
    }
  }

  let version = options.defaultVersion ?? "";
  if (record.version !== undefined && record.version !== null) {
    if (typeof record.version !== "string")
      fail("version", `must be a string, got ${describe(record.version)}`);
    version = record.version as string;
  }

  return Object.freeze({
    groupId,
    topic,
    messageType,
    bindType,
    version,
    watermark: parseWatermark(record.watermark, options.lenientScalars === true, fail),
    persistent: parsePersistent(record.persistent, options.lenientScalars === true, fail),
  });
}

type Fail = (field: string, message: string) => never;

/** groupId and topic appear in ZooKeeper paths: non-empty, no "/". */
function pathSegment(value: unknown, field: string, fail: Fail): string {
  if (value === undefined || value === null || value === "") fail(field, "is required");
  if (typeof value !== "string") fail(field, `must be a string, got ${describe(value)}`);
  if ((value as string).includes("/")) fail(field, `must not contain "/", got ${JSON.stringify(value)}`);
  return value as string;
}

function parseBindType(value: unknown, fallback: BindType | undefined, fail: Fail): BindType {
  if (value === undefined || value === null) {
    if (fallback !== undefined) return fallback;
    fail("bindType", "is required (0 direct, 1 regx, 2 fanout)");
  }
  if (value === 0 || value === 1 || value === 2) return value;
  if (typeof value === "string") {
    const byName: Record<string, BindType> = { direct: 0, regx: 1, fanout: 2, "0": 0, "1": 1, "2": 2 };
    const t = byName[value.trim().toLowerCase()];
    if (t !== undefined) return t;
  }
  return fail("bindType", `must be 0/"direct", 1/"regx" or 2/"fanout", got ${describe(value)}`);
}

function parseWatermark(value: unknown, lenient: boolean, fail: Fail): number {
  if (value === undefined || value === null) return DEFAULT_WATERMARK;
  let n = value;
  if (lenient && typeof value === "string" && /^\s*-?\d+\s*$/.test(value)) n = Number(value);
  if (typeof n !== "number" || !Number.isInteger(n))
    fail("watermark", `must be an integer, got ${describe(value)}`);
  const w = n as number;
  if (w <= 0) return DEFAULT_WATERMARK;
  if (w > MAX_BINDING_WATERMARK) fail("watermark", `must be at most ${MAX_BINDING_WATERMARK}, got ${w}`);
  return w;
}

function parsePersistent(value: unknown, lenient: boolean, fail: Fail): boolean {
  if (value === undefined || value === null) return DEFAULT_PERSISTENT;
  if (typeof value === "boolean") return value;
  if (lenient && typeof value === "string") {
    const v = value.trim().toLowerCase();
    if (["true", "yes", "on", "y"].includes(v)) return true;
    if (["false", "no", "off", "n"].includes(v)) return false;
  }
  return fail("persistent", `must be true or false, got ${describe(value)}`);
}

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Plain object check (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
