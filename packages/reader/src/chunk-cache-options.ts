import type { ChunkSource } from './chunk-source.js';
import type { SpillStats, SpillStore } from './spill-store.js';

/*
 * The public shapes of the chunk cache: its options, a chunk request and its counters.
 * The cache itself (the coordinator) is chunk-cache.ts.
 */

/** Default cache budget: what PBS's live restore uses (64 chunks of 4 MiB). */
export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;
/**
 * Readahead never holds more than this share of the cache: one reader's window is capped
 * by it, and so are all prefetched chunks not read yet (loading or ready) together, however
 * many readers prefetch. The rest of the cache is for chunks someone asked for.
 */
export const MAX_READAHEAD_CACHE_FRACTION = 0.25;

/** Options of {@link ChunkCache}. */
export interface ChunkCacheOptions {
  /** Memory for decoded chunks, fixed for the cache's life whatever is opened. Default 256 MiB. */
  cacheBytes?: number;
  /** Decode threads; default the machine's parallelism; 0 decodes on this thread. */
  workers?: number;
  /** Arena page size, a power of two ≥ 4 KiB; default 64 KiB (the smallest PBS chunk). */
  pageBytes?: number;
  /**
   * Where decoded chunks go when they leave memory (see {@link SpillStore}); its page size
   * must equal `pageBytes`. The cache owns it from here on and closes it. Without one, an
   * evicted chunk read again is fetched and decoded again.
   */
  spill?: SpillStore | undefined;
}

/** One chunk as a reader asks for it. */
export interface ChunkRequest {
  readonly digestHex: string;
  /** Plaintext length the index expects. */
  readonly length: number;
  readonly source: ChunkSource;
  /** Raw key of an encrypted archive. */
  readonly key?: Uint8Array | undefined;
  /**
   * The read belongs to a sequential stream (a copy job, a restore): it wants throughput,
   * not latency, and gives way to urgent loads (see {@link FetchHints}). Default false.
   */
  readonly background?: boolean | undefined;
}

/** Counters of {@link ChunkCache.stats}. */
export interface ChunkCacheStats {
  /** Requests served from a ready slot. */
  hits: number;
  /** Requests that started a fetch. */
  misses: number;
  /** Requests that joined a fetch already in flight (one fetch, one decode, many readers). */
  dedupJoins: number;
  /** Loads started by readahead. */
  prefetches: number;
  /** Prefetched chunks evicted before anyone read them (readahead that was wasted). */
  prefetchesUnused: number;
  /** Plaintext bytes decoded: into the cache, or by a restore straight into its file. */
  bytesDecoded: number;
  /** Ready chunks dropped to make room. */
  evictions: number;
  /** Loads that failed (fetch or decode); never cached. */
  failures: number;
  /** Allocations that had to wait because every slot was pinned or loading. */
  memoryWaits: number;
  /** Reads answered from the spill file straight into the reader's buffer. */
  spillReads: number;
  /** Loads served from the spill file instead of a fetch and decode. */
  spillLoads: number;
  /** The spill file's own counters; undefined without one. */
  spill: SpillStats | undefined;
  /** Loads in flight now. */
  inFlight: number;
  /** Ready chunks now. */
  cachedChunks: number;
  /** Bytes of pages holding ready or loading chunks now. */
  usedBytes: number;
  /** The fixed budget. */
  capacityBytes: number;
}
