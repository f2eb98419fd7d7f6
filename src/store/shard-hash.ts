/**
 * Which shard a message lives in: FNV-1a (32 bit) over the UTF-8 bytes of its KiteQ messageId,
 * modulo the number of shards. Fixed for ever: a message's shard must not move between nodes,
 * versions or restarts (the shard list recorded at creation pins the count, shards.ts).
 *
 * FNV-1a 32: h = 0x811c9dc5; for each byte b: h = (h XOR b) * 0x01000193 (mod 2^32).
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a 32-bit hash of `s`'s UTF-8 bytes, as an unsigned integer. */
export function fnv1a32(s: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    // Not ASCII (KiteQ ids are 32 hex digits; anything else is hashed as its UTF-8 bytes).
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    for (const b of utf8Bytes(c)) h = Math.imul(h ^ b, FNV_PRIME);
  }
  return h >>> 0;
}

function utf8Bytes(c: number): number[] {
  if (c < 0x800) return [0xc0 | (c >> 6), 0x80 | (c & 0x3f)];
  // A lone surrogate is encoded as U+FFFD, as Buffer.from(s, "utf8") does.
  if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
  if (c < 0x10000) return [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)];
  return [0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)];
}

/** The shard (0 .. count-1) of `messageId`; 0 when there is one shard. */
export function shardOf(messageId: string, count: number): number {
  return count <= 1 ? 0 : fnv1a32(messageId) % count;
}
