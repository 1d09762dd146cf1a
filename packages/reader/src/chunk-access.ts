import { type ChunkCache, chunkCacheInternals } from './chunk-cache.js';
import type { ChunkSource } from './chunk-source.js';
import type { FileTarget } from './data-extents.js';
import type { Lease, SlotTable } from './slot-table.js';

/**
 * What a reader needs from the cache for one archive: leases on chunks by digest and
 * length, readahead hints, and the shared memory to copy from. Bound to the archive's
 * source and key, so a reader never handles either; implemented in this thread by
 * {@link localChunkAccess} and in other threads over comlink (remote.ts).
 */
export interface ChunkAccess {
  readonly table: SlotTable;
  readonly capacityBytes: number;
  /** `background`: the read belongs to a sequential stream (see ChunkRequest.background). */
  acquire(digestHex: string, length: number, signal?: AbortSignal, background?: boolean): Promise<Lease>;
  /** A lease without waiting when the chunk is cached; only on the cache's own thread. */
  tryAcquire?(digestHex: string, length: number): Lease | undefined;
  release(lease: Lease): void;
  /**
   * Lends a lease (keeps its pages after the read: see ChunkCache.lend); false when the
   * cache's lending share is spent. Only on the cache's own thread.
   */
  lend?(lease: Lease): boolean;
  /** Drops the pin of a lease {@link lend} lent. */
  returnLent?(lease: Lease): void;
  prefetch(digestHex: string, length: number): void;
  /**
   * Copies part of a chunk that left memory straight from the cache's spill file; false
   * when it is not there (then acquire it). Only on the cache's own thread.
   */
  readSpilled?(
    digestHex: string,
    length: number,
    chunkOffset: number,
    target: Uint8Array,
    targetOffset: number,
    count: number,
  ): Promise<boolean>;
  /** True when {@link readSpilled} would find the chunk (see ChunkCache.isSpilled). */
  isSpilled?(digestHex: string, length: number): boolean;
  /**
   * Fetches a chunk and has a decode thread write it at every offset of `file` (see
   * ChunkCache.decodeToFile); resolves with the bytes written. Only on the cache's own
   * thread: the file descriptor must stay open until the decode has answered, which a
   * reader thread that may die cannot promise.
   */
  decodeToFile?(digestHex: string, length: number, file: FileTarget, signal?: AbortSignal): Promise<number>;
}

/** Chunk access for a reader living on the cache's own thread. */
export function localChunkAccess(
  cache: ChunkCache,
  source: ChunkSource,
  key: Uint8Array | undefined,
): ChunkAccess {
  return {
    table: chunkCacheInternals(cache).table,
    capacityBytes: cache.capacityBytes,
    acquire: (digestHex, length, signal, background) =>
      cache.acquire({ digestHex, length, source, key, background }, signal),
    tryAcquire: (digestHex, length) => cache.tryAcquire(digestHex, length),
    release: (lease) => cache.release(lease),
    lend: (lease) => cache.lend(lease),
    returnLent: (lease) => cache.returnLent(lease),
    prefetch: (digestHex, length) => {
      cache.prefetch({ digestHex, length, source, key });
    },
    readSpilled: (digestHex, length, chunkOffset, target, targetOffset, count) =>
      cache.readSpilled(digestHex, length, chunkOffset, target, targetOffset, count),
    isSpilled: (digestHex, length) => cache.isSpilled(digestHex, length),
    decodeToFile: (digestHex, length, file, signal) =>
      cache.decodeToFile({ digestHex, length, source, key, background: true }, file, signal),
  };
}
