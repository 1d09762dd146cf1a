import { createHash } from 'node:crypto';

/** Size in bytes of a SHA-256 digest: the identity of every chunk. */
export const DIGEST_BYTES = 32;

/** SHA-256 of `data`; chunks, indexes and blobs are all named by this. */
export function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

/** Lower-case hex of a digest, as PBS names chunk files. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

const HEX_DIGEST = /^[0-9a-f]{64}$/;

/** True for exactly 64 lower-case hex digits: the only accepted spelling of a digest. */
export function isHexDigest(text: string): boolean {
  return HEX_DIGEST.test(text);
}
