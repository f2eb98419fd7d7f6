/**
 * Handshake authentication with configured secrets (KITEQ_SECRETS / [secrets]): the secret is
 * compared in constant time (timingSafeEqual over SHA-256 digests, which have equal lengths
 * whatever the secrets' lengths), an unknown group is compared against a random decoy so it
 * takes the same time, and every failure gets the same refusal text, so a client cannot tell an
 * unknown group from a wrong secret. Without secrets every handshake is accepted (KiteQ's
 * behaviour).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** The one refusal text of a failed handshake (never says which part was wrong). */
export const HANDSHAKE_REFUSED = "authentication failed: unknown group or wrong secret";

const digest = (secret: string | Buffer) => createHash("sha256").update(secret).digest();

/**
 * A checker for `secrets` (groupId -> secret): null when the handshake is accepted, else
 * HANDSHAKE_REFUSED. With no secrets configured, always null.
 */
export function secretChecker(
  secrets: ReadonlyMap<string, string>,
): (groupId: string, secretKey: string) => string | null {
  if (secrets.size === 0) return () => null;
  const digests = new Map<string, Buffer>();
  for (const [groupId, secret] of secrets) digests.set(groupId, digest(secret));
  const decoy = digest(randomBytes(32));
  return (groupId, secretKey) => {
    const expected = digests.get(groupId);
    const same = timingSafeEqual(expected ?? decoy, digest(secretKey));
    return same && expected !== undefined ? null : HANDSHAKE_REFUSED;
  };
}
