import type { ChunkIndex } from '@liverestore/format';

/**
 * The walk from a byte range of an image to its chunks: one piece per chunk the range
 * touches, each the part of that chunk inside the range. A cursor rather than an iterator
 * so that the synchronous read paths (warm NBD reads) allocate nothing per chunk:
 *
 *     const piece = new ChunkPieces(index, offset, end);
 *     while (piece.next()) use(piece.chunk, piece.chunkOffset, piece.rangeOffset, piece.count);
 *
 * The range must be non-empty and lie within the image (`0 ≤ offset < end ≤ sizeBytes`).
 */
export class ChunkPieces {
  /** The first chunk the range touches. */
  readonly first: number;
  /** The last chunk the range touches. */
  readonly last: number;
  /** The current piece's chunk (valid after `next()` returned true). */
  chunk: number;
  /** Bytes in the current piece's whole chunk. */
  chunkLength = 0;
  /** Where the piece starts within its chunk. */
  chunkOffset = 0;
  /** Where the piece starts within the range (its place in a read buffer). */
  rangeOffset = 0;
  /** Bytes in the piece. */
  count = 0;

  constructor(
    readonly index: ChunkIndex,
    readonly offset: number,
    readonly end: number,
  ) {
    this.first = index.chunkIndexAt(offset);
    this.last = index.chunkIndexAt(end - 1);
    this.chunk = this.first - 1;
  }

  /** Moves to the next piece; false once the range is walked. */
  next(): boolean {
    if (this.chunk >= this.last) return false;
    const i = ++this.chunk;
    const chunkStart = this.index.chunkStart(i);
    const chunkEnd = this.index.chunkEnd(i);
    const from = Math.max(this.offset, chunkStart);
    this.chunkLength = chunkEnd - chunkStart;
    this.chunkOffset = from - chunkStart;
    this.rangeOffset = from - this.offset;
    this.count = Math.min(this.end, chunkEnd) - from;
    return true;
  }
}
