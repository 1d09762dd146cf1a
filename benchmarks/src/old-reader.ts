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
 *   check, with @liverestore/format's decodeChunk (remote-chunk-reader.ts);
 * - like PBS's `find_most_used_chunks(8)` cache hint, the decoded copies of the (up to)
 *   8 chunks the index references most often (more than once) are kept once fetched —
 *   in practice the all-zero chunk, so unallocated space costs no fetch. This is the one
 *   cache the old design had; leaving it out would make A look worse than it was.
 */

import { resolveArchiveName, type SnapshotRef } from '@liverestore/datastore';
import { type ChunkIndex, readIndex } from '@liverestore/format';
import type { ChunkSource } from '@liverestore/reader';
import { RemoteChunkReader, readChunkByChunk } from './remote-chunk-reader.js';

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
  readonly fetches: number;
  /** Chunk references served from the current chunk or the most-used cache. */
  readonly hits: number;
}

/** One drive read the old way. */
export class OldDriveReader {
  readonly size: number;
  readonly #mutex = new Mutex();
  readonly #chunks: RemoteChunkReader;
  #currentHits = 0;
  #currentChunk = -1;
  #current: Buffer | undefined;

  constructor(
    readonly name: string,
    readonly index: ChunkIndex,
    source: ChunkSource,
  ) {
    this.size = index.sizeBytes;
    this.#chunks = new RemoteChunkReader(source, index);
  }

  /** Opens archive `archive` (`drive-scsi0` or `drive-scsi0.img`) of snapshot `ref` of `source`. */
  static async open(source: ChunkSource, ref: SnapshotRef, archive: string): Promise<OldDriveReader> {
    const name = resolveArchiveName(archive);
    const index = readIndex(await source.readSnapshotFile(ref, name.filename));
    return new OldDriveReader(name.name, index, source);
  }

  get stats(): OldReaderStats {
    const s = this.#chunks.stats;
    return { fetches: s.fetches, hits: this.#currentHits + s.hintHits };
  }

  /** Bytes of the decoded chunks this reader holds now (current chunk + most-used copies). */
  get heldBytes(): number {
    return (this.#current?.length ?? 0) + this.#chunks.keptBytes;
  }

  /** Fills `buffer` from `offset` (the range must lie within the image). */
  read(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#mutex.run(() => readChunkByChunk(this.index, buffer, offset, (i) => this.#chunk(i)));
  }

  async #chunk(i: number): Promise<Buffer> {
    if (i === this.#currentChunk && this.#current !== undefined) {
      this.#currentHits++;
      return this.#current;
    }
    const data = await this.#chunks.readChunk(i);
    this.#currentChunk = i;
    this.#current = data;
    return data;
  }
}
