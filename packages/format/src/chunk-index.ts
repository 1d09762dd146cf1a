import { FormatError } from './errors.js';
import { MAGIC } from './magic.js';

/**
 * What the read path needs from either index kind: where each chunk lies in the image
 * and which digest holds it. Fixed and dynamic indexes differ only in how an offset
 * maps to a chunk (a division or a binary search).
 */
export interface ChunkIndex {
  readonly kind: 'fixed' | 'dynamic';
  /** Index UUID from the header. */
  readonly uuid: Buffer;
  /** Creation time, seconds since the epoch. */
  readonly ctime: number;
  /** SHA-256 over the index entries, as stored in the header and checked on read. */
  readonly indexCsum: Buffer;
  /** Size of the image or file the index describes. */
  readonly sizeBytes: number;
  /** Number of chunks. */
  readonly chunkCount: number;
  /** Digest of chunk `i` (a view into the index, do not modify). */
  digestAt(i: number): Buffer;
  /** Image offset where chunk `i` starts. */
  chunkStart(i: number): number;
  /** Image offset just past chunk `i`. */
  chunkEnd(i: number): number;
  /** Chunk holding image offset `offset` (0 ≤ offset < sizeBytes). */
  chunkIndexAt(offset: number): number;
}

/** Size of the fixed header of both index kinds. */
export const INDEX_HEADER_BYTES = 4096;

/**
 * `data` as a Buffer, once it holds a whole header with the magic of its kind
 * (ERR_LR_INDEX_TRUNCATED, ERR_LR_BAD_MAGIC otherwise): the first check of both readers.
 */
export function checkedIndexBuffer(data: Uint8Array, kind: 'fixed' | 'dynamic'): Buffer {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.byteLength < INDEX_HEADER_BYTES)
    throw new FormatError(
      'ERR_LR_INDEX_TRUNCATED',
      `${kind} index is ${buf.byteLength} bytes, shorter than its header`,
    );
  if (!buf.subarray(0, 8).equals(kind === 'fixed' ? MAGIC.fixedIndex : MAGIC.dynamicIndex))
    throw new FormatError('ERR_LR_BAD_MAGIC', `not a ${kind} index: wrong magic`);
  return buf;
}

export function checkChunkNumber(index: ChunkIndex, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= index.chunkCount) {
    throw new RangeError(`chunk number must be an integer in [0, ${index.chunkCount}), got ${i}`);
  }
}

export function checkOffset(index: ChunkIndex, offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset >= index.sizeBytes) {
    throw new RangeError(`offset must be an integer in [0, ${index.sizeBytes}), got ${offset}`);
  }
}
