import * as zlib from 'node:zlib';
import { deflateSync as fflateDeflate } from 'fflate';
import { Decompress as ZstdDecompress } from 'fzstd';
import { type CryptConfig, IV_BYTES, TAG_BYTES } from './crypt-config.js';
import { CryptError, FormatError, IntegrityError, LiverestoreError } from './errors.js';
import { MAGIC } from './magic.js';

/*
 * Data blob layout (all PBS blobs: chunks, manifest, small files):
 *
 *   unencrypted:  | magic[8] | crc32 u32le | payload ...                 |   12-byte header
 *   encrypted:    | magic[8] | crc32 u32le | iv[16] | tag[16] | cipher...|   44-byte header
 *
 * The CRC covers the bytes after the header only (for encrypted blobs the ciphertext).
 */

/** Header size of an unencrypted blob. */
export const BLOB_HEADER_BYTES = 12;
/** Header size of an encrypted blob (adds IV and GCM tag). */
export const ENCRYPTED_BLOB_HEADER_BYTES = BLOB_HEADER_BYTES + IV_BYTES + TAG_BYTES;
/** Largest blob PBS accepts; also our default limit on decoded output. */
export const MAX_BLOB_BYTES = 128 * 1024 * 1024;

/** How the payload of a blob is compressed. */
export type Compression = 'none' | 'zstd' | 'deflate';

/** What the magic of a blob says about its payload. */
export interface BlobKind {
  readonly compression: Compression;
  readonly encrypted: boolean;
}

const KINDS: ReadonlyArray<readonly [Buffer, BlobKind]> = [
  [MAGIC.uncompressedBlob, { compression: 'none', encrypted: false }],
  [MAGIC.zstdBlob, { compression: 'zstd', encrypted: false }],
  [MAGIC.deflateBlob, { compression: 'deflate', encrypted: false }],
  [MAGIC.encryptedBlob, { compression: 'none', encrypted: true }],
  [MAGIC.encryptedZstdBlob, { compression: 'zstd', encrypted: true }],
  [MAGIC.encryptedDeflateBlob, { compression: 'deflate', encrypted: true }],
];

function magicOf(kind: BlobKind): Buffer {
  for (const [magic, k] of KINDS) {
    if (k.compression === kind.compression && k.encrypted === kind.encrypted) return magic;
  }
  throw new TypeError(`no blob magic for ${JSON.stringify(kind)}`);
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Reads the kind of a blob from its magic, checking the header is complete. */
export function blobKind(blob: Uint8Array): BlobKind {
  if (blob.byteLength < BLOB_HEADER_BYTES) {
    throw new FormatError(
      'ERR_LR_BLOB_TRUNCATED',
      `blob is ${blob.byteLength} bytes, shorter than its header`,
    );
  }
  const head = toBuffer(blob).subarray(0, 8);
  const found = KINDS.find(([magic]) => magic.equals(head));
  if (found === undefined) {
    throw new FormatError('ERR_LR_BAD_MAGIC', `not a data blob: unknown magic ${head.toString('hex')}`);
  }
  const kind = found[1];
  if (kind.encrypted && blob.byteLength < ENCRYPTED_BLOB_HEADER_BYTES) {
    throw new FormatError(
      'ERR_LR_BLOB_TRUNCATED',
      `encrypted blob is ${blob.byteLength} bytes, shorter than its header`,
    );
  }
  return kind;
}

/** Options of {@link encodeBlob}. */
export interface EncodeBlobOptions {
  /** Compression to try; kept only when it makes the payload smaller (as PBS does). Default `deflate`. */
  compress?: Compression;
  /** Encrypts the blob (AES-256-GCM, PBS layout) when given. */
  crypt?: CryptConfig | undefined;
  /** DEFLATE level 1…9 (default 1: backups are written once, throughput matters more than ratio). */
  level?: number;
}

/** True when this Node.js can write zstd (node:zlib gained zstd in 22.15 / 23.8). */
export function canEncodeZstd(): boolean {
  return typeof (zlib as { zstdCompressSync?: unknown }).zstdCompressSync === 'function';
}

function compressPayload(data: Buffer, compression: Compression, level: number): Buffer | undefined {
  switch (compression) {
    case 'none':
      return undefined;
    case 'deflate':
      return toBuffer(fflateDeflate(data, { level: level as 1 }));
    case 'zstd': {
      const zstd = (zlib as { zstdCompressSync?: (d: Uint8Array, o?: object) => Buffer }).zstdCompressSync;
      if (zstd === undefined) {
        throw new LiverestoreError(
          'ERR_LR_ZSTD_UNAVAILABLE',
          `zstd compression needs Node.js >= 22.15 (this is ${process.version}); use --compress deflate`,
        );
      }
      return zstd(data);
    }
  }
}

/**
 * Encodes `data` as a blob. Compression is kept only when smaller, so an incompressible
 * chunk costs no CPU on the read path.
 */
export function encodeBlob(data: Uint8Array, options: EncodeBlobOptions = {}): Buffer {
  const requested = options.compress ?? 'deflate';
  const level = options.level ?? 1;
  if (!Number.isInteger(level) || level < 1 || level > 9)
    throw new RangeError('level must be an integer 1…9');
  if (data.byteLength > MAX_BLOB_BYTES) {
    throw new RangeError(`blob data must be at most ${MAX_BLOB_BYTES} bytes, got ${data.byteLength}`);
  }
  const plain = toBuffer(data);
  const compressed = compressPayload(plain, requested, level);
  const useCompressed = compressed !== undefined && compressed.byteLength < plain.byteLength;
  const payload = useCompressed ? compressed : plain;
  const kind: BlobKind = {
    compression: useCompressed ? requested : 'none',
    encrypted: options.crypt !== undefined,
  };
  const magic = magicOf(kind);
  if (options.crypt === undefined) {
    const out = Buffer.allocUnsafe(BLOB_HEADER_BYTES + payload.byteLength);
    magic.copy(out, 0);
    out.writeUInt32LE(zlib.crc32(payload), 8);
    payload.copy(out, BLOB_HEADER_BYTES);
    return out;
  }
  const { iv, tag, ciphertext } = options.crypt.encrypt(payload);
  const out = Buffer.allocUnsafe(ENCRYPTED_BLOB_HEADER_BYTES + ciphertext.byteLength);
  magic.copy(out, 0);
  out.writeUInt32LE(zlib.crc32(ciphertext), 8);
  iv.copy(out, BLOB_HEADER_BYTES);
  tag.copy(out, BLOB_HEADER_BYTES + IV_BYTES);
  ciphertext.copy(out, ENCRYPTED_BLOB_HEADER_BYTES);
  return out;
}

/** Checks the CRC-32 of a blob; cheap enough to run before every decode. */
export function verifyBlobCrc(blob: Uint8Array): BlobKind {
  const kind = blobKind(blob);
  const buf = toBuffer(blob);
  const start = kind.encrypted ? ENCRYPTED_BLOB_HEADER_BYTES : BLOB_HEADER_BYTES;
  const stored = buf.readUInt32LE(8);
  const actual = zlib.crc32(buf.subarray(start));
  if (stored !== actual) {
    throw new IntegrityError(
      'ERR_LR_BLOB_CRC_MISMATCH',
      `blob CRC-32 mismatch: stored ${stored.toString(16).padStart(8, '0')}, computed ${actual.toString(16).padStart(8, '0')}`,
    );
  }
  return kind;
}

/** Options of {@link decodeBlob}. */
export interface DecodeBlobOptions {
  /** Key for encrypted blobs; decoding one without it fails with `ERR_LR_KEY_REQUIRED`. */
  crypt?: CryptConfig | undefined;
  /** Upper bound on decoded size, against decompression bombs. Default {@link MAX_BLOB_BYTES}. */
  maxBytes?: number;
}

function tooLarge(maxBytes: number): IntegrityError {
  return new IntegrityError('ERR_LR_BLOB_TOO_LARGE', `decoded blob exceeds the limit of ${maxBytes} bytes`);
}

/** Output buffer size handed to zlib when inflating (the whole chunk for chunks up to 4 MiB). */
const INFLATE_CHUNK_BYTES = 4 * 1024 * 1024;

function inflate(payload: Buffer, maxBytes: number): Buffer {
  let out: Buffer;
  try {
    // A large output chunk size saves zlib's repeated buffer growth: ~40% faster on 4 MiB
    // chunks (benchmarks/codecs). With an exact expected length it allocates just once.
    const chunkSize = Math.max(64, Math.min(maxBytes, INFLATE_CHUNK_BYTES));
    out = zlib.inflateRawSync(payload, { maxOutputLength: Math.max(maxBytes, 1), chunkSize });
  } catch (cause) {
    if ((cause as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(maxBytes);
    throw new IntegrityError('ERR_LR_DECOMPRESS_FAILED', 'DEFLATE payload is corrupt', { cause });
  }
  if (out.byteLength > maxBytes) throw tooLarge(maxBytes);
  return out;
}

/**
 * Largest window any frame of a zstd payload declares. fzstd allocates that window up
 * front (up to ~2 GiB) before it yields a byte, so it is bounded like the output.
 * Reads frame and block headers only; malformed input is left to the decoder.
 */
function zstdMaxWindowBytes(p: Uint8Array): number {
  const u32 = (at: number) => (p[at]! | (p[at + 1]! << 8) | (p[at + 2]! << 16) | (p[at + 3]! << 24)) >>> 0;
  let max = 0;
  let at = 0;
  while (at + 8 <= p.length) {
    const magic = u32(at);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      at += 8 + u32(at + 4); // skippable frame
      continue;
    }
    if (magic !== 0xfd2fb528) break;
    const fhd = p[at + 4]!;
    const singleSegment = (fhd & 0x20) !== 0;
    const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fhd >> 6]!;
    let pos = at + 5;
    let window = 0;
    if (!singleSegment) {
      const wd = p[pos++]!;
      const base = 2 ** (10 + (wd >> 3));
      window = base + (base / 8) * (wd & 7);
    }
    pos += [0, 1, 2, 4][fhd & 3]!; // dictionary id
    if (singleSegment) {
      let fcs = 0;
      for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + (p[pos + i] ?? 0);
      window = fcsBytes === 2 ? fcs + 256 : fcs;
    }
    pos += fcsBytes;
    max = Math.max(max, window);
    for (;;) {
      if (pos + 3 > p.length) return max;
      const h = p[pos]! | (p[pos + 1]! << 8) | (p[pos + 2]! << 16);
      pos += 3 + (((h >> 1) & 3) === 1 ? 1 : h >>> 3); // an RLE block stores one byte
      if (h & 1) break;
    }
    at = pos + (fhd & 4 ? 4 : 0); // content checksum
  }
  return max;
}

/** Windows up to this size are always accepted (zstd's own default limit for decoders is 128 MiB; level 19 uses 8 MiB). */
const ZSTD_WINDOW_FLOOR_BYTES = 8 * 1024 * 1024;

function unzstd(payload: Buffer, maxBytes: number): Buffer {
  // Encoders declare windows up to a few MiB whatever the content size (the zstd CLI
  // reading stdin says 512 KiB at level 1), so bound the window by a ceiling, not by
  // the output; the output itself is bounded below.
  if (zstdMaxWindowBytes(payload) > Math.max(2 * maxBytes, ZSTD_WINDOW_FLOOR_BYTES)) throw tooLarge(maxBytes);
  const parts: Uint8Array[] = [];
  let total = 0;
  const stream = new ZstdDecompress((part) => {
    total += part.byteLength;
    if (total > maxBytes) throw tooLarge(maxBytes);
    parts.push(part);
  });
  try {
    stream.push(payload, true);
  } catch (cause) {
    if (cause instanceof IntegrityError) throw cause;
    throw new IntegrityError('ERR_LR_DECOMPRESS_FAILED', 'zstd payload is corrupt', { cause });
  }
  return parts.length === 1 ? toBuffer(parts[0]!) : Buffer.concat(parts, total);
}

/**
 * Decodes a blob to its plaintext: CRC-32 check, decrypt, decompress, size limit.
 * It does not check a chunk digest; {@link decodeChunk} does.
 */
export function decodeBlob(blob: Uint8Array, options: DecodeBlobOptions = {}): Buffer {
  const maxBytes = options.maxBytes ?? MAX_BLOB_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0)
    throw new RangeError('maxBytes must be a non-negative integer');
  const kind = verifyBlobCrc(blob);
  const buf = toBuffer(blob);
  let payload: Buffer;
  if (kind.encrypted) {
    if (options.crypt === undefined) {
      throw new CryptError('ERR_LR_KEY_REQUIRED', 'blob is encrypted and no key was given');
    }
    payload = options.crypt.decrypt(
      buf.subarray(BLOB_HEADER_BYTES, BLOB_HEADER_BYTES + IV_BYTES),
      buf.subarray(BLOB_HEADER_BYTES + IV_BYTES, ENCRYPTED_BLOB_HEADER_BYTES),
      buf.subarray(ENCRYPTED_BLOB_HEADER_BYTES),
    );
  } else {
    payload = buf.subarray(BLOB_HEADER_BYTES);
  }
  switch (kind.compression) {
    case 'none':
      if (payload.byteLength > maxBytes) throw tooLarge(maxBytes);
      return payload;
    case 'deflate':
      return inflate(payload, maxBytes);
    case 'zstd':
      return unzstd(payload, maxBytes);
  }
}
