/*
 * A chunk decoded while its blob arrives: each piece of the blob goes through the CRC-32,
 * the zstd stream decoder and SHA-256 as it comes, so the decode ends a moment after the
 * last byte instead of starting then. For unencrypted blobs, uncompressed or zstd (what
 * backups of this project and PBS's hold); the others are decoded whole (decodeChunkWith).
 * The rules are decodeChunk's: no byte counts as the chunk's before the digest matched (the
 * caller publishes `into` only after finish()), and a damaged blob fails with the code
 * decodeChunk gives it: the CRC-32 first, then the decompressor's verdict, then the length
 * and the digest.
 */
import { createHash, type Hash } from 'node:crypto';
import * as zlib from 'node:zlib';
import {
  BLOB_HEADER_BYTES,
  type BlobKind,
  blobCrcMismatch,
  blobKind,
  crcCoveredByDigest,
  storedBlobCrc,
} from './blob.js';
import { aboutChunk, checkChunkDigest, chunkLengthMismatch } from './chunk.js';
import { blobTooLarge, FormatError, IntegrityError, LiverestoreError } from './errors.js';
import { toHex } from './hex.js';
import { napiZstdStream, type ZstdStreamDecoder } from './zstd-backends.js';
import { zstdWindowLimitBytes } from './zstd-codec.js';

let streamDecoder: ZstdStreamDecoder | null | undefined;

/** This thread's zstd stream decoder; null where none can be loaded. */
function zstdStream(): ZstdStreamDecoder | null {
  if (streamDecoder === undefined) streamDecoder = napiZstdStream() ?? null;
  return streamDecoder;
}

/** True when blobs can be decoded as they arrive here (zstd-napi's stream decoder loads). */
export function canDecodeArriving(): boolean {
  return zstdStream() !== null;
}

/** True for the kinds of blob {@link ArrivingChunk} decodes piece by piece. */
export function decodesArriving(kind: BlobKind): boolean {
  return !kind.encrypted && kind.compression !== 'deflate';
}

/**
 * One chunk decoded from its blob as the blob arrives: {@link push} the blob's bytes in
 * order (any split), then {@link finish}. The plaintext goes to `into` (exactly the
 * chunk's length); it is the chunk's only once finish() returned.
 */
export class ArrivingChunk {
  readonly #expectedDigest: Uint8Array;
  readonly #into: Uint8Array;
  readonly #header = new Uint8Array(BLOB_HEADER_BYTES);
  #headerBytes = 0;
  #kind: BlobKind | undefined;
  #crc = 0;
  readonly #hash: Hash = createHash('sha256');
  #written = 0;
  /** zstd: 0 once the last frame fed ended. */
  #frameLeft = 0;
  /** The decompressor's error, reported after the CRC-32 (as decodeChunk orders them). */
  #decodeError: unknown;

  /** `expectedDigest`: the index's; `into`: where the plaintext goes, its length the chunk's. */
  constructor(expectedDigest: Uint8Array, into: Uint8Array) {
    this.#expectedDigest = expectedDigest;
    this.#into = into;
  }

  /** The next bytes of the blob. Throws for a blob this does not decode ({@link decodesArriving}). */
  push(bytes: Uint8Array): void {
    let rest = bytes;
    if (this.#kind === undefined) {
      const take = Math.min(rest.byteLength, BLOB_HEADER_BYTES - this.#headerBytes);
      this.#header.set(rest.subarray(0, take), this.#headerBytes);
      this.#headerBytes += take;
      rest = rest.subarray(take);
      if (this.#headerBytes < BLOB_HEADER_BYTES) return;
      this.#begin(blobKind(this.#header));
    }
    if (rest.byteLength === 0) return;
    const kind = this.#kind!;
    if (!crcCoveredByDigest(kind)) this.#crc = zlib.crc32(rest, this.#crc);
    if (this.#decodeError !== undefined) return;
    try {
      if (kind.compression === 'none') this.#plain(rest);
      else this.#inflate(rest);
    } catch (err) {
      this.#decodeError = err;
    }
  }

  #begin(kind: BlobKind): void {
    if (!decodesArriving(kind))
      throw new TypeError(`a ${kind.encrypted ? 'encrypted' : kind.compression} blob is decoded whole`);
    this.#kind = kind;
    if (kind.compression === 'zstd') {
      const zstd = zstdStream();
      if (zstd === null)
        throw new LiverestoreError('ERR_LR_ZSTD_UNAVAILABLE', 'no zstd stream decoder could be loaded');
      zstd.begin(Math.ceil(Math.log2(zstdWindowLimitBytes(this.#into.byteLength))));
    }
  }

  #plain(bytes: Uint8Array): void {
    if (this.#written + bytes.byteLength > this.#into.byteLength) throw blobTooLarge(this.#into.byteLength);
    this.#into.set(bytes, this.#written);
    this.#hash.update(bytes);
    this.#written += bytes.byteLength;
  }

  #inflate(bytes: Uint8Array): void {
    const zstd = zstdStream()!;
    let input = bytes;
    while (input.byteLength > 0) {
      let left: number;
      let produced: number;
      let consumed: number;
      try {
        [left, produced, consumed] = zstd.decompress(this.#into.subarray(this.#written), input);
      } catch (cause) {
        throw new IntegrityError('ERR_LR_DECOMPRESS_FAILED', 'zstd payload is corrupt', { cause });
      }
      if (produced > 0) this.#hash.update(this.#into.subarray(this.#written, this.#written + produced));
      this.#written += produced;
      this.#frameLeft = left;
      input = input.subarray(consumed);
      if (produced === 0 && consumed === 0) {
        // No room left and input still there: the payload decodes to more than the chunk.
        throw blobTooLarge(this.#into.byteLength, 'while decoding');
      }
    }
  }

  /** Checks the whole: CRC-32, the decompressor, the length, the digest. Throws as decodeChunk would. */
  finish(): void {
    const hex = toHex(this.#expectedDigest);
    if (this.#kind === undefined)
      throw new FormatError(
        'ERR_LR_BLOB_TRUNCATED',
        `chunk ${hex}: blob is ${this.#headerBytes} bytes, shorter than its header`,
      );
    if (!crcCoveredByDigest(this.#kind)) {
      const stored = storedBlobCrc(this.#header);
      if (stored !== this.#crc >>> 0)
        throw aboutChunk(blobCrcMismatch(stored, this.#crc), this.#expectedDigest);
    }
    if (this.#decodeError !== undefined) throw aboutChunk(this.#decodeError, this.#expectedDigest);
    if (this.#kind.compression === 'zstd' && this.#frameLeft !== 0) {
      // Output still pending with no room for it is a payload larger than the chunk.
      const [, pending] = zstdStream()!.decompress(new Uint8Array(1), new Uint8Array(0));
      if (pending > 0) throw blobTooLarge(this.#into.byteLength, `chunk ${hex}`);
      throw new IntegrityError(
        'ERR_LR_DECOMPRESS_FAILED',
        `chunk ${hex}: zstd payload is truncated or corrupt`,
      );
    }
    if (this.#written !== this.#into.byteLength)
      throw chunkLengthMismatch(hex, this.#written, this.#into.byteLength);
    checkChunkDigest(this.#hash.digest(), this.#expectedDigest);
  }
}
