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
