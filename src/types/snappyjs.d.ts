/** Minimal typings for snappyjs 0.7 (the package ships none): block format compress/uncompress. */
declare module "snappyjs" {
  /** Snappy block-compress `input`; the result has the input's type. */
  export function compress<T extends Uint8Array | ArrayBuffer>(input: T): T;
  /** Decompress a snappy block; throws on corrupt input. `maxLength` bounds the output size. */
  export function uncompress<T extends Uint8Array | ArrayBuffer>(input: T, maxLength?: number): T;
}
