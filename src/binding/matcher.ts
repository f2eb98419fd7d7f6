/**
 * Which groups a message is owed to: binding matching (Direct, Regx, Fanout) with one entry per
 * group, and the rules that keep a set of bindings consistent.
 */
import { ErrorCode, KiteqError } from "../errors.js";
import { type Binding, BindType, bindingMatches, bindingsToJson, messageTypeRegex } from "./binding.js";

/** Options of a BindingMatcher. */
export interface BindingMatcherOptions {
  /** Most (topic, messageType) results kept; default DEFAULT_MATCH_CACHE_SIZE. 0 disables the cache. */
  cacheSize?: number;
}

/** Default bound of the matcher's (topic, messageType) result cache. */
export const DEFAULT_MATCH_CACHE_SIZE = 10_000;

const NONE: readonly Binding[] = Object.freeze([]);

/**
 * An immutable index of bindings answering "which groups get this message". Build a new one
 * when the bindings change (construction is linear and cheap). It does not reject conflicts:
 * check them where bindings enter (validateBindings, mergeBindings).
 */
export class BindingMatcher {
  /** The bindings this matcher was built from. */
  readonly bindings: readonly Binding[];
  private readonly byTopic = new Map<string, Binding[][]>();
  private readonly cache = new Map<string, readonly Binding[]>();
  private readonly cacheSize: number;

  constructor(bindings: readonly Binding[], options: BindingMatcherOptions = {}) {
    this.bindings = Object.freeze([...bindings]);
    this.cacheSize = Math.max(0, Math.floor(options.cacheSize ?? DEFAULT_MATCH_CACHE_SIZE));
    // topic -> one list per group (groups in order of first appearance), Regx compiled up front.
    const groupIndex = new Map<string, Map<string, Binding[]>>();
    for (const b of bindings) {
      if (b.bindType === BindType.Regx) messageTypeRegex(b.messageType);
      let groups = groupIndex.get(b.topic);
      if (groups === undefined) {
        groups = new Map();
        groupIndex.set(b.topic, groups);
      }
      const list = groups.get(b.groupId);
      if (list === undefined) groups.set(b.groupId, [b]);
      else list.push(b);
    }
    for (const [topic, groups] of groupIndex) this.byTopic.set(topic, [...groups.values()]);
  }

  /**
   * The bindings a message of this topic and messageType is owed to: exactly one per group.
   * When several bindings of one group match, the most specific wins (Direct, then Regx, then
   * Fanout; first in list order among equals), so its watermark and persistence apply.
   * Regx is Go's regexp.MatchString: an unanchored search in messageType.
   * Groups come in the order of their first binding for the topic. The result is frozen and
   * may be shared between calls.
   */
  groupsFor(topic: string, messageType: string): readonly Binding[] {
    const groups = this.byTopic.get(topic);
    if (groups === undefined) return NONE;
    const key = `${topic}\u0000${messageType}`;
    const cached = this.cache.get(key);
    if (cached !== undefined) return cached;

    const result: Binding[] = [];
    for (const list of groups) {
      let best: Binding | undefined;
      for (const b of list) {
        if ((best === undefined || b.bindType < best.bindType) && bindingMatches(b, topic, messageType)) {
          best = b;
          if (b.bindType === BindType.Direct) break;
        }
      }
      if (best !== undefined) result.push(best);
    }
    const frozen = Object.freeze(result);
    if (this.cacheSize > 0) {
      if (this.cache.size >= this.cacheSize) {
        this.cache.delete(this.cache.keys().next().value as string);
      }
      this.cache.set(key, frozen);
    }
    return frozen;
  }

  /** Number of (topic, messageType) results currently cached (bounded by the cacheSize option). */
  get cachedResults(): number {
    return this.cache.size;
  }
}

/** Two bindings of one group, topic and messageType that disagree; indexes into the list. */
export interface BindingConflict {
  first: number;
  second: number;
  /** The setting they disagree on. */
  field: "bindType" | "watermark" | "persistent";
}

/**
 * The first conflict in a list: the same groupId + topic + messageType twice with a different
 * bindType, watermark or persistent. Exact repeats (same settings) are not conflicts.
 */
export function findBindingConflict(list: readonly Binding[]): BindingConflict | undefined {
  const seen = new Map<string, number>();
  for (let i = 0; i < list.length; i++) {
    const b = list[i] as Binding;
    const key = JSON.stringify([b.groupId, b.topic, b.messageType]);
    const j = seen.get(key);
    if (j === undefined) {
      seen.set(key, i);
      continue;
    }
    const a = list[j] as Binding;
    const field =
      a.bindType !== b.bindType
        ? "bindType"
        : a.watermark !== b.watermark
          ? "watermark"
          : a.persistent !== b.persistent
            ? "persistent"
            : undefined;
    if (field !== undefined) return { first: j, second: i, field };
  }
  return undefined;
}

/** Throw BindingInvalid describing the first conflict in the list (see findBindingConflict). */
export function validateBindings(list: readonly Binding[]): void {
  const conflict = findBindingConflict(list);
  if (conflict !== undefined) throw conflictError(list, conflict, (i) => `bindings[${i}]`);
}

/** The BindingInvalid error for a conflict; `label` names an element for the message. */
export function conflictError(
  list: readonly Binding[],
  conflict: BindingConflict,
  label: (index: number) => string,
): KiteqError {
  const a = list[conflict.first] as Binding;
  const b = list[conflict.second] as Binding;
  return new KiteqError(
    ErrorCode.BindingInvalid,
    `${label(conflict.second)}: conflicts with ${label(conflict.first)}: group ${JSON.stringify(a.groupId)} ` +
      `topic ${JSON.stringify(a.topic)} messageType ${JSON.stringify(a.messageType)} bound twice with ` +
      `${conflict.field} ${String(a[conflict.field])} and ${String(b[conflict.field])}`,
    { groupId: a.groupId, topic: a.topic, field: conflict.field },
  );
}

/**
 * Apply bind nodes to a set of bindings, as KiteQ applies `/kiteq/sub/{topic}/{groupId}-bind`:
 * for every (groupId, topic) that appears in `incoming`, all existing bindings of that group and
 * topic are replaced by the incoming ones; other bindings are kept, in order, and the new ones
 * appended. Exact repeats in `incoming` are kept once. Throws BindingInvalid if `incoming`
 * conflicts with itself. To remove a group's bindings of a topic, use replaceGroupBindings.
 */
export function mergeBindings(existing: readonly Binding[], incoming: readonly Binding[]): Binding[] {
  validateBindings(incoming);
  const replaced = new Set(incoming.map((b) => pairKey(b.groupId, b.topic)));
  const kept = existing.filter((b) => !replaced.has(pairKey(b.groupId, b.topic)));
  return [...kept, ...dedupe(incoming)];
}

/**
 * Set the bindings of one group for one topic (the content of its `-bind` node; an empty list
 * means the node was deleted). Every incoming binding must have that groupId and topic.
 */
export function replaceGroupBindings(
  existing: readonly Binding[],
  topic: string,
  groupId: string,
  incoming: readonly Binding[],
): Binding[] {
  incoming.forEach((b, i) => {
    if (b.groupId !== groupId || b.topic !== topic) {
      throw new KiteqError(
        ErrorCode.BindingInvalid,
        `bindings[${i}]: the bind node of group ${JSON.stringify(groupId)} topic ${JSON.stringify(topic)} ` +
          `holds a binding of group ${JSON.stringify(b.groupId)} topic ${JSON.stringify(b.topic)}`,
        { groupId, topic, index: i },
      );
    }
  });
  validateBindings(incoming);
  const key = pairKey(groupId, topic);
  return [...existing.filter((b) => pairKey(b.groupId, b.topic) !== key), ...dedupe(incoming)];
}

function pairKey(groupId: string, topic: string): string {
  return JSON.stringify([groupId, topic]);
}

/** Drop exact repeats (same JSON form), keeping the first. */
function dedupe(list: readonly Binding[]): Binding[] {
  const seen = new Set<string>();
  return list.filter((b) => {
    const key = bindingsToJson([b]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
