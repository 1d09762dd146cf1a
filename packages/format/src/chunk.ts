import { type Compression, decodeBlob, encodeBlob, MAX_BLOB_BYTES } from './blob.js';
import type { CryptConfig } from './crypt-config.js';
import { IntegrityError } from './errors.js';
import { sha256, toHex } from './hex.js';

/** A chunk as the writer stores it: its identity and its encoded bytes. */
export interface EncodedChunk {
  /** SHA-256 of the plaintext (keyed with the id key when encrypted). */
  readonly digest: Buffer;
  /** The blob as stored in `.chunks/`. */
  readonly blob: Buffer;
}

/** Digest of chunk plaintext: plain SHA-256, or the keyed digest of an encrypted backup. */
export function chunkDigest(data: Uint8Array, crypt?: CryptConfig): Buffer {
  return crypt === undefined ? sha256(data) : crypt.computeDigest(data);
}

/** Encodes one chunk: digest of the plaintext, then the blob (compressed, maybe encrypted). */
export function encodeChunk(
  data: Uint8Array,
  options: { compress?: Compression; crypt?: CryptConfig | undefined; level?: number } = {},
): EncodedChunk {
  return { digest: chunkDigest(data, options.crypt), blob: encodeBlob(data, options) };
}

/**
 * Decodes a chunk blob and checks it is the chunk the index asked for. This is the
 * only way plaintext leaves a chunk: no byte is handed out before its digest matched.
 */
export function decodeChunk(
  blob: Uint8Array,
  expectedDigest: Uint8Array,
  options: { crypt?: CryptConfig | undefined; maxBytes?: number } = {},
): Buffer {
  let plain: Buffer;
  try {
    plain = decodeBlob(blob, { crypt: options.crypt, maxBytes: options.maxBytes ?? MAX_BLOB_BYTES });
  } catch (err) {
    if (err instanceof Error) err.message = `chunk ${toHex(expectedDigest)}: ${err.message}`;
    throw err;
  }
  const actual = chunkDigest(plain, options.crypt);
  if (!actual.equals(expectedDigest)) {
    throw new IntegrityError(
      'ERR_LR_DIGEST_MISMATCH',
      `chunk ${toHex(expectedDigest)}: decoded data has digest ${toHex(actual)}`,
    );
  }
  return plain;
}
