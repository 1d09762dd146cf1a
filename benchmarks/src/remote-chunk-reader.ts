/**
 * The chunk reader under both PBS read paths of `bench live-restore`, A (old-reader.ts)
 * and C (pbs-today-reader.ts), modelled on PBS's `pbs-client/src/remote_chunk_reader.rs`
 * (`RemoteChunkReader`, unchanged in substance by the 2021 rewrite): one per drive, it
 * fetches a chunk's blob and decodes it inline on the calling task — here the event-loop
 * thread — with @liverestore/format's decodeChunk (CRC-32, inflate, SHA-256 check), or,
 * for C with `--pbs-decode-threads`, on a pool standing in for tokio's worker threads.
 *
 * Its one cache is PBS's cache hint: proxmox-backup-qemu's restore passes
 * `find_most_used_chunks(8)`, the (up to) 8 chunks the drive's index references most
 * often (more than once); their decoded copies are kept once fetched, and a hit returns a
 * copy of them (`to_vec()` in PBS). In practice that is the all-zero chunk, so
 * unallocated space costs no fetch. Leaving the hint out would make A and C look worse
 * than PBS is.
 */

import { type ChunkIndex, decodeChunk, toHex } from '@liverestore/format';
import type { ChunkSource } from '@liverestore/reader';
import type { PbsDecodeTask } from './pbs-decode-worker.js';

/** Decodes a chunk elsewhere (C's optional decode pool); `transfer`: the blob may be moved. */
export type ChunkDecoder = (task: PbsDecodeTask, transfer: boolean) => Promise<Buffer>;

/** Chunks the cache hint keeps, as PBS's restore passes to `find_most_used_chunks`. */
export const MOST_USED_CHUNKS = 8;

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

/** Counters of one RemoteChunkReader. */
export interface RemoteChunkReaderStats {
  /** Chunk fetches (each followed by an inline decode). */
  fetches: number;
  /** Chunks served as a copy of a kept most-used chunk. */
  hintHits: number;
}

/** Fetch + inline decode of one drive's chunks, with PBS's most-used cache hint. */
export class RemoteChunkReader {
  readonly stats: RemoteChunkReaderStats = { fetches: 0, hintHits: 0 };
  readonly #hex: string[];
  readonly #mostUsed: Set<string>;
  readonly #kept = new Map<string, Buffer>();

  /** `decoder`: where to decode; inline on the calling thread when absent. */
  constructor(
    readonly source: ChunkSource,
    readonly index: ChunkIndex,
    readonly decoder?: ChunkDecoder,
  ) {
    this.#hex = Array.from({ length: index.chunkCount }, (_, i) => toHex(index.digestAt(i)));
    this.#mostUsed = mostUsedChunks(index);
  }

  /** The digest (hex) of chunk `i` of the index. */
  digestHex(i: number): string {
    return this.#hex[i]!;
  }

  /** Bytes of the kept most-used chunks. */
  get keptBytes(): number {
    let n = 0;
    for (const b of this.#kept.values()) n += b.length;
    return n;
  }

  /** The decoded chunk `i` of the index, the caller's own copy. */
  async readChunk(i: number): Promise<Buffer> {
    const hex = this.#hex[i]!;
    const kept = this.#kept.get(hex);
    if (kept !== undefined) {
      this.stats.hintHits++;
      return Buffer.from(kept);
    }
    const blob = await this.source.fetchChunk(hex);
    this.stats.fetches++;
    const length = this.index.chunkEnd(i) - this.index.chunkStart(i);
    const data =
      this.decoder === undefined
        ? decodeChunk(blob, this.index.digestAt(i), { maxBytes: length })
        : await this.decoder({ blob, digestHex: hex, length }, this.source.blobsAreTransferable === true);
    if (data.length !== length) throw new Error(`chunk ${hex}: ${data.length} bytes, index says ${length}`);
    if (this.#mostUsed.has(hex)) this.#kept.set(hex, Buffer.from(data));
    return data;
  }
}

/**
 * Fills `buffer` from image offset `offset` the way both PBS read paths do: chunk by
 * chunk, each awaited before the next is asked for (`chunkAt(i)` gives chunk `i`
 * decoded), so the chunks of one read are fetched one after another.
 */
export async function readChunkByChunk(
  index: ChunkIndex,
  buffer: Uint8Array,
  offset: number,
  chunkAt: (i: number) => Promise<Uint8Array>,
): Promise<void> {
  const end = offset + buffer.byteLength;
  if (offset < 0 || end > index.sizeBytes) throw new RangeError('read outside the image');
  let at = offset;
  while (at < end) {
    const i = index.chunkIndexAt(at);
    const chunk = await chunkAt(i);
    const start = index.chunkStart(i);
    const to = Math.min(end, index.chunkEnd(i));
    buffer.set(chunk.subarray(at - start, to - start), at - offset);
    at = to;
  }
}
