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
 * Dynamic index (.didx), for files and archives cut by the content-defined chunker:
 *
 *   0      8      24      32           64          4096
 *   | magic | uuid | ctime | index_csum | reserved 0 |
 *   | end_offset u64 | digest[32] |  ... one 40-byte entry per chunk, end offsets increasing
 */

/** Bytes of one dynamic index entry. */
export const DYNAMIC_ENTRY_BYTES = 8 + DIGEST_BYTES;

/** A parsed, checked `.didx`. */
export class DynamicIndex implements ChunkIndex {
  readonly kind = 'dynamic' as const;
  readonly chunkCount: number;
  readonly sizeBytes: number;

  constructor(
    readonly uuid: Buffer,
    readonly ctime: number,
    readonly indexCsum: Buffer,
    /** End offset of every chunk, strictly increasing. */
    readonly ends: Float64Array,
    /** All digests back to back, 32 bytes each. */
    readonly digests: Buffer,
  ) {
    this.chunkCount = ends.length;
    this.sizeBytes = ends.length === 0 ? 0 : ends[ends.length - 1]!;
  }

  digestAt(i: number): Buffer {
    checkChunkNumber(this, i);
    return this.digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  chunkStart(i: number): number {
    checkChunkNumber(this, i);
    return i === 0 ? 0 : this.ends[i - 1]!;
  }

  chunkEnd(i: number): number {
    checkChunkNumber(this, i);
    return this.ends[i]!;
  }

  /** Binary search for the first chunk whose end lies beyond `offset`. */
  chunkIndexAt(offset: number): number {
    checkOffset(this, offset);
    let lo = 0;
    let hi = this.ends.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Parses a `.didx` and checks header, entry layout, monotonic offsets and `index_csum`. */
export function readDynamicIndex(data: Uint8Array): DynamicIndex {
  const buf = checkedIndexBuffer(data, 'dynamic');
  const body = buf.subarray(INDEX_HEADER_BYTES);
  if (body.byteLength % DYNAMIC_ENTRY_BYTES !== 0) {
    throw new FormatError(
      'ERR_LR_INDEX_LENGTH_MISMATCH',
      `dynamic index body is ${body.byteLength} bytes, not a multiple of ${DYNAMIC_ENTRY_BYTES}`,
    );
  }
  const count = body.byteLength / DYNAMIC_ENTRY_BYTES;
  const ends = new Float64Array(count);
  const digests = Buffer.alloc(count * DIGEST_BYTES);
  let previous = 0;
  for (let i = 0; i < count; i++) {
    const at = i * DYNAMIC_ENTRY_BYTES;
    const end = body.readBigUInt64LE(at);
    if (end > BigInt(Number.MAX_SAFE_INTEGER) || Number(end) <= previous) {
      throw new FormatError(
        'ERR_LR_INDEX_CORRUPT',
        `dynamic index entry ${i}: end offset ${end} does not increase`,
      );
    }
    previous = Number(end);
    ends[i] = previous;
    body.copy(digests, i * DIGEST_BYTES, at + 8, at + DYNAMIC_ENTRY_BYTES);
  }
  const indexCsum = Buffer.from(buf.subarray(32, 64));
  if (!sha256(body).equals(indexCsum)) {
    throw new IntegrityError(
      'ERR_LR_INDEX_CSUM_MISMATCH',
      'dynamic index checksum does not match its entries',
    );
  }
  return new DynamicIndex(
    Buffer.from(buf.subarray(8, 24)),
    Number(buf.readBigInt64LE(24)),
    indexCsum,
    ends,
    digests,
  );
}

/** What {@link writeDynamicIndex} needs. */
export interface DynamicIndexInit {
  /** One entry per chunk, in file order. */
  entries: ReadonlyArray<{ endOffset: number; digest: Uint8Array }>;
  ctime?: number;
  uuid?: Uint8Array;
}

/** Serialises a `.didx`, computing `index_csum` over the entries exactly as stored. */
export function writeDynamicIndex(init: DynamicIndexInit): Buffer {
  const out = Buffer.alloc(INDEX_HEADER_BYTES + init.entries.length * DYNAMIC_ENTRY_BYTES);
  MAGIC.dynamicIndex.copy(out, 0);
  const uuid = init.uuid ?? randomBytes(16);
  if (uuid.byteLength !== 16) throw new RangeError('uuid must be 16 bytes');
  out.set(uuid, 8);
  out.writeBigInt64LE(BigInt(init.ctime ?? Math.floor(Date.now() / 1000)), 24);
  let previous = 0;
  init.entries.forEach((entry, i) => {
    if (!Number.isSafeInteger(entry.endOffset) || entry.endOffset <= previous) {
      throw new RangeError(`entries[${i}].endOffset must increase, got ${entry.endOffset} after ${previous}`);
    }
    if (entry.digest.byteLength !== DIGEST_BYTES)
      throw new RangeError(`entries[${i}].digest must be 32 bytes`);
    previous = entry.endOffset;
    const at = INDEX_HEADER_BYTES + i * DYNAMIC_ENTRY_BYTES;
    out.writeBigUInt64LE(BigInt(entry.endOffset), at);
    out.set(entry.digest, at + 8);
  });
  sha256(out.subarray(INDEX_HEADER_BYTES)).copy(out, 32);
  return out;
}
