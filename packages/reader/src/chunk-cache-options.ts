import { availableParallelism } from 'node:os';
import { checkPositiveInteger } from '@liverestore/format/internal';
import { defaultBlobBudgetBytes } from './blob-budget.js';
import type { ChunkSource } from './chunk-source.js';
import type { ChunkLoadRecord } from './load-record.js';
import { DEFAULT_PAGE_BYTES } from './slot-table.js';
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

/**
 * Lent chunks (pinned after a read returned, until an NBD reply has left or a region is
 * stored: see ChunkCache.lend) never hold more than this share of the cache, however many
 * clients leave their replies unread; beyond it reads copy, so loads always find memory.
 */
export const MAX_LENT_CACHE_FRACTION = 0.5;

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
  /**
   * Map the cache's memory when the cache is made (a write per 4 KiB), so the first
   * decodes (a guest's first reads) do not pay the first-touch page faults: the process's
   * resident memory is `cacheBytes` from the start. It costs the constructor ≈ 40 ms per
   * 256 MiB on an idle host and up to ≈ 160 ms on a VM that reports free pages to its
   * host. For caches that serve a guest (`nbd` and `live-restore` turn it on, before they
   * listen); default false, since a cache that may never fill (a restore, image
   * downloads) would spend the CPU and the memory for nothing.
   */
  prefault?: boolean | undefined;
  /**
   * Decode an urgent load's blob while it arrives, from a source that reports arrivals
   * (`ChunkSource.blobsArrive`: HTTP, S3), on a decode thread that is idle when the
   * answer's head comes, and only while no other urgent blob is on its way (see
   * architecture.md, "Decode as the blob arrives"). Default false: such a decode costs
   * 6–10 % more CPU per chunk and holds its thread until the blob's last byte, which
   * lengthened a queue-depth-16 guest's p99 by 4–19 % on a 2-core machine, while a
   * queue-depth-1 guest behind a 1 ms / 1 Gbit/s link gained 7–14 % (docs/benchmarks.md).
   */
  decodeAsArriving?: boolean | undefined;
  /**
   * Hears every load when it ends (ready or failed), with the time of each phase: memory,
   * blob, waiting for a decode thread, decode (see {@link ChunkLoadRecord}). For tracing
   * where misses wait; it runs on the cache's thread, so it must be quick.
   */
  onLoad?: ((record: ChunkLoadRecord) => void) | undefined;
  /**
   * Memory for chunk blobs between fetch and decode (fetching, waiting for a decode thread,
   * decoding), each counted at its chunk's plaintext length plus the largest blob header
   * from before its fetch starts. Loads past it wait for their fetch, background ones at
   * three quarters of it (the rest is for urgent loads). Default: four chunks of 4 MiB for
   * one decode thread, two more per further thread (see BlobBudget).
   */
  blobBudgetBytes?: number;
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
  /**
   * Blobs that failed verification and that their source dropped (a persistent cache's
   * damaged copy, see ChunkSource.discardBlob): each was fetched once more.
   */
  discardedBlobs: number;
  /** The spill file's own counters; undefined without one. */
  spill: SpillStats | undefined;
  /** Loads in flight now. */
  inFlight: number;
  /** Ready chunks now. */
  cachedChunks: number;
  /** Bytes of the chunks lent now (see ChunkCache.lend), each chunk counted once. */
  lentBytes: number;
  /** Bytes of pages holding ready or loading chunks now. */
  usedBytes: number;
  /** The fixed budget. */
  capacityBytes: number;
  /** Bytes of blobs between fetch and decode now (as charged, see ChunkCacheOptions.blobBudgetBytes). */
  blobBytes: number;
  /** The most {@link blobBytes} held at once since the cache was created. */
  peakBlobBytes: number;
  /** The blob budget (ChunkCacheOptions.blobBudgetBytes). */
  blobBudgetBytes: number;
  /**
   * Blobs fetched into memory an earlier blob used (the cache's blob pool: a source that
   * takes FetchHints.blobMemory reads into it), rather than into fresh memory.
   */
  blobMemoryReused: number;
}

/** The cache's sizes from its options, with defaults; RangeError for values it cannot work with. */
export function checkCacheOptions(options: ChunkCacheOptions): {
  pageBytes: number;
  pageCount: number;
  workers: number;
  blobBudgetBytes: number;
} {
  const pageBytes = options.pageBytes ?? DEFAULT_PAGE_BYTES;
  checkPositiveInteger(pageBytes, 'pageBytes');
  if (pageBytes < 4096 || (pageBytes & (pageBytes - 1)) !== 0)
    throw new RangeError('pageBytes must be a power of two ≥ 4096');
  const cacheBytes = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
  checkPositiveInteger(cacheBytes, 'cacheBytes');
  const pageCount = Math.floor(cacheBytes / pageBytes);
  if (pageCount < 1) throw new RangeError(`cacheBytes must be at least one page (${pageBytes} bytes)`);
  const workers = options.workers ?? availableParallelism();
  if (!Number.isInteger(workers) || workers < 0)
    throw new RangeError('workers must be a non-negative integer');
  const blobBudgetBytes = options.blobBudgetBytes ?? defaultBlobBudgetBytes(workers);
  checkPositiveInteger(blobBudgetBytes, 'blobBudgetBytes');
  return { pageBytes, pageCount, workers, blobBudgetBytes };
}
