import { sha256 } from './hex.js';

/**
 * Every PBS file starts with 8 magic bytes: the first 8 bytes of SHA-256 of a fixed string.
 * The PBS values are kept literally (they are what PBS writes); our own magics are derived
 * from documented strings with the same rule, so anyone can recompute them.
 */
function fromString(text: string): Buffer {
  return sha256(Buffer.from(text, 'utf8')).subarray(0, 8);
}

export const MAGIC = {
  /** PBS: blob without compression or encryption. */
  uncompressedBlob: Buffer.from([66, 171, 56, 7, 190, 131, 112, 161]),
  /** PBS: zstd-compressed blob. */
  zstdBlob: Buffer.from([49, 185, 88, 66, 111, 182, 163, 127]),
  /** PBS: AES-256-GCM encrypted blob. */
  encryptedBlob: Buffer.from([123, 103, 133, 190, 34, 45, 76, 240]),
  /** PBS: zstd-compressed, then encrypted blob. */
  encryptedZstdBlob: Buffer.from([230, 89, 27, 191, 11, 191, 216, 11]),
  /** liverestore: raw DEFLATE (RFC 1951) compressed blob. */
  deflateBlob: fromString('liverestore deflate compressed blob v1'),
  /** liverestore: raw DEFLATE compressed, then encrypted blob. */
  encryptedDeflateBlob: fromString('liverestore deflate compressed encrypted blob v1'),
  /** PBS: fixed-size chunk index (`.fidx`). */
  fixedIndex: Buffer.from([47, 127, 65, 237, 145, 253, 15, 205]),
  /** PBS: dynamic-size chunk index (`.didx`). */
  dynamicIndex: Buffer.from([28, 145, 78, 165, 25, 186, 179, 205]),
} as const;

/** The strings our own magics are hashed from, for docs/formats.md and tests. */
export const MAGIC_SOURCE_STRINGS = {
  deflateBlob: 'liverestore deflate compressed blob v1',
  encryptedDeflateBlob: 'liverestore deflate compressed encrypted blob v1',
} as const;
