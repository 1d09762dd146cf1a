/**
 * "A" of `bench live-restore`: the read path PBS had before its 2021 rewrite, rebuilt
 * here (not in the product) to compare against. Per drive (proxmox-backup-qemu's
 * restore of that time: an `AsyncIndexReader` over a `RemoteChunkReader`, behind a
 * mutex per drive):
 *
 * - one reader per drive that keeps only its current decoded chunk;
 * - every read of the drive holds the drive's mutex from start to end, so reads of one
 *   drive never overlap (the background copy and the guest queue behind each other);
 * - a read that spans chunks fetches them one after another;
 * - a chunk is fetched (over HTTP from the same `liverestore serve`, with the product's
 *   HTTP client) and decoded inline on the calling thread: CRC-32, inflate, SHA-256
 *   check, with @liverestore/format's decodeChunk;
 * - like PBS's `find_most_used_chunks(8)` cache hint, the decoded copies of the (up to)
 *   8 chunks the index references most often (more than once) are kept once fetched —
 *   in practice the all-zero chunk, so unallocated space costs no fetch. This is the one
 *   cache the old design had; leaving it out would make A look worse than it was.
 */

import { resolveArchiveName, type SnapshotRef } from '@liverestore/datastore';
import { type ChunkIndex, decodeChunk, readIndex, toHex } from '@liverestore/format';
import type { ChunkSource } from '@liverestore/reader';

/** Chunks the cache hint keeps, as PBS's restore passed to `find_most_used_chunks`. */
export const MOST_USED_CHUNKS = 8;

/** A FIFO mutex: `run` executes its callbacks one at a time, in call order. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(work);
    this.#tail = result.catch(() => {});
    return result;
  }
}

/** Counters of one old-design drive reader. */
export interface OldReaderStats {
  /** Chunk fetches (each followed by an inline decode). */
  fetches: number;
  /** Chunk references served from the current chunk or the most-used cache. */
  hits: number;
}

/** The digests referenced more than once, most often first, at most `count` (PBS semantics). */
export function mostUsedChunks(index: ChunkIndex, count = MOST_USED_CHUNKS): Set<string> {
  const uses = new Map<string, number>();
  for (let i = 0; i < index.chunkCount; i++) {
    const hex = toHex(index.digestAt(i));
    uses.set(hex, (uses.get(hex) ?? 0) + 1);
  }
  return new Set(
    [...uses]
      .filter(([, n]) => n > 1)
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([hex]) => hex),
  );
}

/** One drive read the old way. */
export class OldDriveReader {
  readonly size: number;
  readonly stats: OldReaderStats = { fetches: 0, hits: 0 };
  readonly #mutex = new Mutex();
  readonly #hex: string[];
  readonly #mostUsed: Set<string>;
  readonly #mostUsedData = new Map<string, Buffer>();
  #currentChunk = -1;
  #current: Buffer | undefined;

  constructor(
    readonly name: string,
    readonly index: ChunkIndex,
    readonly source: ChunkSource,
  ) {
    this.size = index.sizeBytes;
    this.#hex = Array.from({ length: index.chunkCount }, (_, i) => toHex(index.digestAt(i)));
    this.#mostUsed = mostUsedChunks(index);
  }

  /** Opens archive `archive` (`drive-scsi0` or `drive-scsi0.img`) of snapshot `ref` of `source`. */
  static async open(source: ChunkSource, ref: SnapshotRef, archive: string): Promise<OldDriveReader> {
    const name = resolveArchiveName(archive);
    const index = readIndex(await source.readSnapshotFile(ref, name.filename));
    return new OldDriveReader(name.name, index, source);
  }

  /** Bytes of the decoded chunks this reader holds now (current chunk + most-used copies). */
  get heldBytes(): number {
    let n = this.#current?.length ?? 0;
    for (const b of this.#mostUsedData.values()) if (b !== this.#current) n += b.length;
    return n;
  }

  /** Fills `buffer` from `offset` (the range must lie within the image). */
  read(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#mutex.run(async () => {
      const end = offset + buffer.byteLength;
      if (offset < 0 || end > this.size) throw new RangeError('read outside the image');
      let at = offset;
      while (at < end) {
        const i = this.index.chunkIndexAt(at);
        const chunk = await this.#chunk(i);
        const start = this.index.chunkStart(i);
        const to = Math.min(end, this.index.chunkEnd(i));
        buffer.set(chunk.subarray(at - start, to - start), at - offset);
        at = to;
      }
    });
  }

  async #chunk(i: number): Promise<Buffer> {
    if (i === this.#currentChunk && this.#current !== undefined) {
      this.stats.hits++;
      return this.#current;
    }
    const hex = this.#hex[i]!;
    let data = this.#mostUsedData.get(hex);
    if (data !== undefined) {
      this.stats.hits++;
    } else {
      const blob = await this.source.fetchChunk(hex);
      this.stats.fetches++;
      const length = this.index.chunkEnd(i) - this.index.chunkStart(i);
      data = decodeChunk(blob, this.index.digestAt(i), { maxBytes: length });
      if (data.length !== length) throw new Error(`chunk ${hex}: ${data.length} bytes, index says ${length}`);
      if (this.#mostUsed.has(hex)) this.#mostUsedData.set(hex, data);
    }
    this.#currentChunk = i;
    this.#current = data;
    return data;
  }
}
