import * as zlib from 'node:zlib';
import { deflateSync as fflateDeflate } from 'fflate';
import { type CryptConfig, IV_BYTES, TAG_BYTES } from './crypt-config.js';
import { CryptError, FormatError, IntegrityError, blobTooLarge as tooLarge } from './errors.js';
import { MAGIC } from './magic.js';
import { zstdCodec, zstdCompress, zstdDecompress, zstdDecompressWith } from './zstd-codec.js';

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
  /**
   * Compression to try; kept only when it makes the payload smaller (as PBS does).
   * Default `zstd`, what PBS writes and reads.
   */
  compress?: Compression;
  /** Encrypts the blob (AES-256-GCM, PBS layout) when given. */
  crypt?: CryptConfig | undefined;
  /** zstd or DEFLATE level 1…9 (default 1, as PBS: backups are written once, throughput matters more than ratio). */
  level?: number;
}

/**
 * True when this process can write zstd: on every supported Node.js, through node:zlib
 * or the fallbacks of {@link zstdCodecInfo}; false only if none of them could load.
 */
export function canEncodeZstd(): boolean {
  return zstdCodec.encoder !== undefined;
}

function compressPayload(data: Buffer, compression: Compression, level: number): Buffer | undefined {
  switch (compression) {
    case 'none':
      return undefined;
    case 'deflate':
      return toBuffer(fflateDeflate(data, { level: level as 1 }));
    case 'zstd':
      return zstdCompress(data, level);
  }
}

/**
 * Encodes `data` as a blob. Compression is kept only when smaller, so an incompressible
 * chunk costs no CPU on the read path.
 */
export function encodeBlob(data: Uint8Array, options: EncodeBlobOptions = {}): Buffer {
  const requested = options.compress ?? 'zstd';
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

/** The CRC-32 a blob's header stores (after its magic). */
export function storedBlobCrc(header: Uint8Array): number {
  return Buffer.from(header.buffer, header.byteOffset, header.byteLength).readUInt32LE(8);
}

/** `ERR_LR_BLOB_CRC_MISMATCH`: a blob's payload does not have the CRC-32 its header stores. */
export function blobCrcMismatch(stored: number, actual: number): IntegrityError {
  const hex = (crc: number): string => (crc >>> 0).toString(16).padStart(8, '0');
  return new IntegrityError(
    'ERR_LR_BLOB_CRC_MISMATCH',
    `blob CRC-32 mismatch: stored ${hex(stored)}, computed ${hex(actual)}`,
  );
}

/** Checks the stored CRC-32 of a blob of `kind` against its payload (see {@link verifyBlobCrc}). */
function checkCrc(buf: Buffer, kind: BlobKind): void {
  const start = kind.encrypted ? ENCRYPTED_BLOB_HEADER_BYTES : BLOB_HEADER_BYTES;
  const stored = storedBlobCrc(buf);
  const actual = zlib.crc32(buf.subarray(start));
  if (stored !== actual) throw blobCrcMismatch(stored, actual);
}

/** Checks the CRC-32 of a blob, whatever its kind: what verify and every blob read without a digest run. */
export function verifyBlobCrc(blob: Uint8Array): BlobKind {
  const kind = blobKind(blob);
  checkCrc(toBuffer(blob), kind);
  return kind;
}

/**
 * The one case where a decode skips the CRC-32: the caller checks the SHA-256 digest of the
 * plaintext, and the blob is unencrypted and uncompressed, so its CRC covers exactly the
 * bytes that digest covers. A damaged payload is then refused by the digest
 * (`ERR_LR_DIGEST_MISMATCH`); a damaged CRC field alone leaves the data intact. Compressed
 * and encrypted payloads keep the check: their CRC covers bytes the digest does not (what
 * the decompressor or the cipher reads). See docs/formats.md, "CRC-32 on the read path".
 */
export function crcCoveredByDigest(kind: BlobKind): boolean {
  return !kind.encrypted && kind.compression === 'none';
}

/** Options of {@link decodeBlob}. */
export interface DecodeBlobOptions {
  /** Key for encrypted blobs; decoding one without it fails with `ERR_LR_KEY_REQUIRED`. */
  crypt?: CryptConfig | undefined;
  /** Upper bound on decoded size, against decompression bombs. Default {@link MAX_BLOB_BYTES}. */
  maxBytes?: number;
  /**
   * Where the plaintext may be decoded ({@link decodeBlobWith} only): a decoder that
   * writes where it is told (zstd-napi) puts it there, and `use` gets a view of it. Its
   * bytes are undefined after a failed decode.
   */
  into?: Uint8Array | undefined;
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
 * A blob whose CRC-32 checked out (unless `digestChecked` and {@link crcCoveredByDigest}):
 * its compression and its payload, decrypted.
 */
function openBlob(
  blob: Uint8Array,
  options: DecodeBlobOptions,
  digestChecked: boolean,
): { compression: Compression; payload: Buffer; maxBytes: number } {
  const maxBytes = options.maxBytes ?? MAX_BLOB_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0)
    throw new RangeError('maxBytes must be a non-negative integer');
  const kind = blobKind(blob);
  const buf = toBuffer(blob);
  if (!(digestChecked && crcCoveredByDigest(kind))) checkCrc(buf, kind);
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
  if (kind.compression === 'none' && payload.byteLength > maxBytes) throw tooLarge(maxBytes);
  return { compression: kind.compression, payload, maxBytes };
}

/**
 * Decodes a blob to its plaintext: CRC-32 check, decrypt, decompress, size limit.
 * It does not check a chunk digest; {@link decodeChunk} does.
 */
export function decodeBlob(blob: Uint8Array, options: DecodeBlobOptions = {}): Buffer {
  return decodePayload(blob, options, false);
}

/**
 * {@link decodeBlob} for a caller that checks the plaintext's digest afterwards
 * (`digestChecked`: see {@link crcCoveredByDigest}); the chunk decoders of chunk.ts.
 */
export function decodePayload(blob: Uint8Array, options: DecodeBlobOptions, digestChecked: boolean): Buffer {
  const { compression, payload, maxBytes } = openBlob(blob, options, digestChecked);
  switch (compression) {
    case 'none':
      return payload;
    case 'deflate':
      return inflate(payload, maxBytes);
    case 'zstd':
      return zstdDecompress(payload, maxBytes);
  }
}

/**
 * {@link decodeBlob} that hands the plaintext to `use` and returns its result. For a zstd
 * blob the plaintext is the decoder's own memory where it can be (no copy into a new
 * Buffer), so it is valid only during the call: `use` hashes it or copies it to where it
 * goes, and keeps no reference. `digestChecked`: `use` checks the plaintext's digest
 * before anything else (see {@link crcCoveredByDigest}).
 */
export function decodeBlobWith<T>(
  blob: Uint8Array,
  options: DecodeBlobOptions,
  use: (plain: Uint8Array) => T,
  digestChecked = false,
): T {
  const { compression, payload, maxBytes } = openBlob(blob, options, digestChecked);
  switch (compression) {
    case 'none':
      return use(payload);
    case 'deflate':
      return use(inflate(payload, maxBytes));
    case 'zstd':
      return zstdDecompressWith(payload, maxBytes, use, undefined, options.into);
  }
}
