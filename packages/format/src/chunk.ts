import { type Compression, decodeBlobWith, decodePayload, encodeBlob, MAX_BLOB_BYTES } from './blob.js';
import type { CryptConfig } from './crypt-config.js';
import { IntegrityError, LiverestoreError } from './errors.js';
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

/** Options of {@link decodeChunk} and {@link decodeChunkWith}. */
export interface DecodeChunkOptions {
  crypt?: CryptConfig | undefined;
  maxBytes?: number;
  /** Where the plaintext may be decoded ({@link decodeChunkWith} only; see DecodeBlobOptions.into). */
  into?: Uint8Array | undefined;
}

/** Prefixes a decode error with the chunk it is about. */
export function aboutChunk(err: unknown, expectedDigest: Uint8Array): unknown {
  if (err instanceof Error) err.message = `chunk ${toHex(expectedDigest)}: ${err.message}`;
  return err;
}

/** Throws `ERR_LR_DIGEST_MISMATCH` unless `actual`, the digest of a decoded chunk, is the index's. */
export function checkChunkDigest(actual: Buffer, expectedDigest: Uint8Array): void {
  if (!actual.equals(expectedDigest)) {
    throw new IntegrityError(
      'ERR_LR_DIGEST_MISMATCH',
      `chunk ${toHex(expectedDigest)}: decoded data has digest ${toHex(actual)}`,
    );
  }
}

/** `ERR_LR_CHUNK_LENGTH_MISMATCH`: a chunk decoded to `bytes`, not the `expected` its index says. */
export function chunkLengthMismatch(digestHex: string, bytes: number, expected: number): LiverestoreError {
  return new LiverestoreError(
    'ERR_LR_CHUNK_LENGTH_MISMATCH',
    `chunk ${digestHex} holds ${bytes} bytes, the index expects ${expected}`,
  );
}

function checkDigest(plain: Uint8Array, expectedDigest: Uint8Array, crypt: CryptConfig | undefined): void {
  checkChunkDigest(chunkDigest(plain, crypt), expectedDigest);
}

/**
 * Decodes a chunk blob and checks it is the chunk the index asked for. This is the
 * only way plaintext leaves a chunk: no byte is handed out before its digest matched.
 * The CRC-32 of an unencrypted, uncompressed blob is not computed: the digest covers the
 * same bytes (`crcCoveredByDigest`); `verifyBlobCrc` checks it where that matters (verify).
 */
export function decodeChunk(
  blob: Uint8Array,
  expectedDigest: Uint8Array,
  options: DecodeChunkOptions = {},
): Buffer {
  let plain: Buffer;
  try {
    plain = decodePayload(blob, { crypt: options.crypt, maxBytes: options.maxBytes ?? MAX_BLOB_BYTES }, true);
  } catch (err) {
    throw aboutChunk(err, expectedDigest);
  }
  checkDigest(plain, expectedDigest, options.crypt);
  return plain;
}

/**
 * {@link decodeChunk} without a copy of the plaintext: `use` gets it once its digest
 * matched, in the decoder's memory where it can be (zstd on WebAssembly), valid only
 * during the call. How decode threads put a chunk where it goes (a cache slot, a file)
 * with one copy, and no new 4 MiB buffer per chunk; with `options.into`, a decoder that
 * writes where it is told (zstd-napi) decodes there, and `use` gets that view: no copy.
 */
export function decodeChunkWith<T>(
  blob: Uint8Array,
  expectedDigest: Uint8Array,
  options: DecodeChunkOptions,
  use: (plain: Uint8Array) => T,
): T {
  // Errors of the decode get the chunk's name; the digest check names it itself, and what
  // `use` throws (a failed write) passes through as it is.
  let decoded = false as boolean;
  try {
    return decodeBlobWith(
      blob,
      { crypt: options.crypt, maxBytes: options.maxBytes ?? MAX_BLOB_BYTES, into: options.into },
      (plain) => {
        decoded = true;
        checkDigest(plain, expectedDigest, options.crypt);
        return use(plain);
      },
      true,
    );
  } catch (err) {
    throw decoded ? err : aboutChunk(err, expectedDigest);
  }
}
