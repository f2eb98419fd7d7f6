/**
 * Snappy bodies as kiteq-client-go writes them: header.snappy true means the body is a snappy
 * block; for a STRING_MESSAGE the string is the base64 of the compressed bytes.
 */
import snappy from "snappyjs";
import { ErrorCode, KiteqError } from "../errors.js";

/** Largest body a decompression may produce (the wire's own packet bound is 2 MiB; bodies may expand). */
const MAX_UNCOMPRESSED = 64 * 1024 * 1024;

/** Compress a body for the wire: bytes stay bytes, a string becomes base64 of its compressed UTF-8. */
export function compressBody(body: Buffer | string): Buffer | string {
  if (typeof body === "string") {
    return Buffer.from(snappy.compress(Buffer.from(body, "utf8"))).toString("base64");
  }
  return Buffer.from(snappy.compress(body));
}

/** Undo {@link compressBody}; a corrupt body throws KiteqError(BodyInvalid). */
export function decompressBody(body: Buffer | string, context: { messageId?: string } = {}): Buffer | string {
  try {
    if (typeof body === "string") {
      return Buffer.from(snappy.uncompress(Buffer.from(body, "base64"), MAX_UNCOMPRESSED)).toString("utf8");
    }
    return Buffer.from(snappy.uncompress(body, MAX_UNCOMPRESSED));
  } catch (err) {
    throw new KiteqError(ErrorCode.BodyInvalid, "snappy body does not decompress", context, { cause: err });
  }
}
