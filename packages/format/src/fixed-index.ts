import { randomBytes } from 'node:crypto';
import {
  type ChunkIndex,
  checkChunkNumber,
  checkedIndexBuffer,
  checkOffset,
  INDEX_HEADER_BYTES,
} from './chunk-index.js';
import { FormatError, IntegrityError } from './errors.js';
import { DIGEST_BYTES, sha256 } from './hex.js';
import { MAGIC } from './magic.js';

/*
 * Fixed index (.fidx), one per VM disk:
 *
 *   0      8      24      32           64        72            80        4096
 *   | magic | uuid | ctime | index_csum | size u64 | chunk_size u64 | reserved 0 |
 *   | digest 0 (32) | digest 1 | ... | digest n-1 |        n = ceil(size / chunk_size)
 */

/** Smallest and largest fixed chunk size we accept (PBS: 64 KiB … 4 MiB, powers of two). */
export const MIN_FIXED_CHUNK_BYTES = 64 * 1024;
export const MAX_FIXED_CHUNK_BYTES = 4 * 1024 * 1024;
/** PBS default chunk size for VM disks. */
export const DEFAULT_FIXED_CHUNK_BYTES = 4 * 1024 * 1024;

/** Throws RangeError unless `chunkSizeBytes` is a power of two within 64 KiB … 4 MiB. */
export function checkFixedChunkSize(chunkSizeBytes: number, name = 'chunkSizeBytes'): void {
  if (
    !Number.isInteger(chunkSizeBytes) ||
    chunkSizeBytes < MIN_FIXED_CHUNK_BYTES ||
    chunkSizeBytes > MAX_FIXED_CHUNK_BYTES ||
    (chunkSizeBytes & (chunkSizeBytes - 1)) !== 0
  ) {
    throw new RangeError(`${name} must be a power of two from 64 KiB to 4 MiB, got ${chunkSizeBytes}`);
  }
}

/** A parsed, checked `.fidx`. */
export class FixedIndex implements ChunkIndex {
  readonly kind = 'fixed' as const;
  readonly chunkCount: number;

  constructor(
    readonly uuid: Buffer,
    readonly ctime: number,
    readonly indexCsum: Buffer,
    readonly sizeBytes: number,
    readonly chunkSizeBytes: number,
    /** All digests back to back, 32 bytes each. */
    readonly digests: Buffer,
  ) {
    this.chunkCount = digests.byteLength / DIGEST_BYTES;
  }

  digestAt(i: number): Buffer {
    checkChunkNumber(this, i);
    return this.digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  chunkStart(i: number): number {
    checkChunkNumber(this, i);
    return i * this.chunkSizeBytes;
  }

  chunkEnd(i: number): number {
    checkChunkNumber(this, i);
    return Math.min((i + 1) * this.chunkSizeBytes, this.sizeBytes);
  }

  chunkIndexAt(offset: number): number {
    checkOffset(this, offset);
    return Math.floor(offset / this.chunkSizeBytes);
  }
}

function readU64(buf: Buffer, at: number, field: string): number {
  const value = buf.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FormatError('ERR_LR_INDEX_CORRUPT', `index ${field} ${value} is out of range`);
  }
  return Number(value);
}

/** Parses a `.fidx` and checks everything that can be checked without the chunks. */
export function readFixedIndex(data: Uint8Array): FixedIndex {
  const buf = checkedIndexBuffer(data, 'fixed');
  const ctime = Number(buf.readBigInt64LE(24));
  const indexCsum = Buffer.from(buf.subarray(32, 64));
  const sizeBytes = readU64(buf, 64, 'size');
  const chunkSizeBytes = readU64(buf, 72, 'chunk size');
  if (chunkSizeBytes === 0 || (chunkSizeBytes & (chunkSizeBytes - 1)) !== 0 || chunkSizeBytes > 2 ** 30) {
    throw new FormatError(
      'ERR_LR_INDEX_BAD_CHUNK_SIZE',
      `fixed index chunk size ${chunkSizeBytes} is not a power of two`,
    );
  }
  const count = Math.ceil(sizeBytes / chunkSizeBytes);
  const expected = INDEX_HEADER_BYTES + count * DIGEST_BYTES;
  if (buf.byteLength !== expected) {
    throw new FormatError(
      'ERR_LR_INDEX_LENGTH_MISMATCH',
      `fixed index is ${buf.byteLength} bytes; size ${sizeBytes} with chunk size ${chunkSizeBytes} needs ${expected}`,
    );
  }
  const digests = Buffer.from(buf.subarray(INDEX_HEADER_BYTES));
  const actual = sha256(digests);
  if (!actual.equals(indexCsum)) {
    throw new IntegrityError('ERR_LR_INDEX_CSUM_MISMATCH', 'fixed index checksum does not match its digests');
  }
  return new FixedIndex(
    Buffer.from(buf.subarray(8, 24)),
    ctime,
    indexCsum,
    sizeBytes,
    chunkSizeBytes,
    digests,
  );
}

/** What {@link writeFixedIndex} needs. */
export interface FixedIndexInit {
  sizeBytes: number;
  chunkSizeBytes: number;
  /** `ceil(sizeBytes / chunkSizeBytes)` digests, back to back. */
  digests: Uint8Array;
  /** Seconds since the epoch; default now. */
  ctime?: number;
  /** 16 bytes; default random. */
  uuid?: Uint8Array;
}

/** Serialises a `.fidx`, computing `index_csum`. */
export function writeFixedIndex(init: FixedIndexInit): Buffer {
  checkFixedChunkSize(init.chunkSizeBytes);
  if (!Number.isSafeInteger(init.sizeBytes) || init.sizeBytes < 0) {
    throw new RangeError('sizeBytes must be a non-negative safe integer');
  }
  const count = Math.ceil(init.sizeBytes / init.chunkSizeBytes);
  if (init.digests.byteLength !== count * DIGEST_BYTES) {
    throw new RangeError(
      `digests must hold ${count} digests (${count * DIGEST_BYTES} bytes), got ${init.digests.byteLength}`,
    );
  }
  const uuid = init.uuid ?? randomBytes(16);
  if (uuid.byteLength !== 16) throw new RangeError('uuid must be 16 bytes');
  const out = Buffer.alloc(INDEX_HEADER_BYTES + init.digests.byteLength);
  MAGIC.fixedIndex.copy(out, 0);
  out.set(uuid, 8);
  out.writeBigInt64LE(BigInt(init.ctime ?? Math.floor(Date.now() / 1000)), 24);
  sha256(init.digests).copy(out, 32);
  out.writeBigUInt64LE(BigInt(init.sizeBytes), 64);
  out.writeBigUInt64LE(BigInt(init.chunkSizeBytes), 72);
  out.set(init.digests, INDEX_HEADER_BYTES);
  return out;
}
