import { availableParallelism } from 'node:os';
import { LiverestoreError } from '@liverestore/format';
import { LRUCache } from 'lru-cache';
import type { ChunkSource, FetchHints } from './chunk-source.js';
import type { DecodeResult, DecodeTask } from './decode-worker.js';
import { type ChunkDecoder, inlineDecoder, poolDecoder } from './decoder.js';
import { abortError, fromErrorRecord, ReaderError } from './errors.js';
import {
  DEFAULT_PAGE_BYTES,
  type Generation,
  kGenerationField,
  kLengthField,
  kPageCountField,
  kReleaseSeqField,
  kStateField,
  type Lease,
  type SharedCacheMemory,
  type SlotIndex,
  SlotState,
  SlotTable,
} from './slot-table.js';
import type { SpillStats, SpillStore } from './spill-store.js';

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

/**
 * The spill writer keeps this share of the cache's least recently used chunks written to
 * the spill file ahead of need, so an eviction finds clean chunks and never waits for a write.
 */
export const SPILL_AHEAD_CACHE_FRACTION = 0.25;
/** Spill writes the writer keeps in flight ahead of need (evictions that must wait add theirs). */
const SPILL_AHEAD_WRITES = 2;

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
  /** Plaintext bytes decoded into the cache. */
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

interface Waiter {
  resolve(lease: Lease): void;
  reject(err: unknown): void;
}

/** A chunk being fetched and decoded; its `urgent` flag is the live hint its fetch reads. */
interface Load extends FetchHints {
  readonly waiters: Set<Waiter>;
  /** Plaintext length the index expects; every joiner must expect the same. */
  readonly length: number;
  /** A reader outside any sequential stream waits for it; raised when one joins, never lowered. */
  urgent: boolean;
}

/** A decode waiting for a thread. */
interface DecodeJob {
  readonly load: Load;
  readonly task: DecodeTask;
  readonly takeBlob: boolean;
  resolve(result: DecodeResult): void;
  reject(err: unknown): void;
}

interface AllocWaiter {
  readonly pageCount: number;
  resolve(slot: SlotIndex): void;
  reject(err: unknown): void;
}

function checkPositiveInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
}

/**
 * The shared chunk cache: a coordinator actor over a fixed SharedArrayBuffer arena.
 *
 * It is the only writer of cache bookkeeping (LRU map digest → slot, in-flight map
 * digest → load, free lists, slot states), so it needs no locks: everything runs on the
 * thread that created it. Readers in this thread call it directly; readers in other
 * threads reach it through {@link createCachePort}. Either way a reader gets a pinned
 * {@link Lease} and copies out of shared memory itself.
 *
 * - Concurrent requests for one chunk share one fetch and one decode.
 * - A failed fetch or decode is never cached; every waiter gets the error.
 * - Aborting one waiter never cancels a load others wait for.
 * - Memory never exceeds `cacheBytes`; when every slot is pinned or loading, requests
 *   wait (FIFO) for a release. A single-chunk cache still serves any number of readers,
 *   because readers never hold a pin while they wait for another chunk.
 * - Loads a reader outside any sequential stream waits for (a guest's random read) are
 *   urgent: their fetch goes first on the source's link ({@link FetchHints}) and their
 *   decode goes first here, where decodes wait for a free thread rather than in the pool.
 */
export class ChunkCache {
  readonly table: SlotTable;
  readonly memory: SharedCacheMemory;
  readonly #decoder: ChunkDecoder;
  readonly #lru: LRUCache<string, SlotIndex>;
  readonly #loads = new Map<string, Load>();
  readonly #freePages: number[] = [];
  readonly #freeSlots: SlotIndex[] = [];
  readonly #pageLists: (Int32Array | undefined)[];
  readonly #allocWaiters: AllocWaiter[] = [];
  /** Prefetched chunks (loading or ready) nobody has read yet, with the bytes they hold. */
  readonly #unread = new Map<string, number>();
  #unreadBytes = 0;
  readonly #closing = new AbortController();
  /** Decodes handed to the decoder and not finished: at most one per thread. */
  #decoding = 0;
  /** close() waiting for the decodes on threads to finish. */
  readonly #decodesDone: (() => void)[] = [];
  /** Decodes waiting for a thread, in arrival order; urgent loads go first. */
  readonly #decodeQueue: DecodeJob[] = [];
  /** Loads whose blob is on its way from the source. */
  readonly #fetching = new Set<Load>();
  #waitingForRelease = false;
  #closed = false;
  readonly #spill: SpillStore | undefined;
  /** Ready chunks being written to the spill file (each holds a pin of the cache's own). */
  readonly #spilling = new Set<string>();
  /** Ready chunks the spill file refused (full of chunks being read, a full disk): evictable as they are. */
  readonly #unspillable = new Set<string>();
  readonly #stats = {
    hits: 0,
    spillReads: 0,
    spillLoads: 0,
    misses: 0,
    dedupJoins: 0,
    prefetches: 0,
    prefetchesUnused: 0,
    bytesDecoded: 0,
    evictions: 0,
    failures: 0,
    memoryWaits: 0,
  };

  constructor(options: ChunkCacheOptions = {}) {
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

    this.memory = SlotTable.allocate(pageCount, pageBytes);
    this.table = new SlotTable(this.memory);
    for (let page = pageCount - 1; page >= 0; page--) this.#freePages.push(page);
    for (let slot = this.table.slotCount - 1; slot >= 0; slot--) this.#freeSlots.push(slot as SlotIndex);
    this.#pageLists = new Array(this.table.slotCount);
    this.#lru = new LRUCache<string, SlotIndex>({ max: this.table.slotCount });
    this.#decoder = workers === 0 ? inlineDecoder(this.table) : poolDecoder(this.memory, workers);
    if (options.spill !== undefined && options.spill.pageBytes !== pageBytes)
      throw new RangeError(
        `the spill store's pageBytes (${options.spill.pageBytes}) must equal the cache's (${pageBytes})`,
      );
    this.#spill = options.spill;
  }

  /** The decoder, for diagnostics and fault tests (its piscina pool when workers > 0). */
  get decoder(): ChunkDecoder {
    return this.#decoder;
  }

  /** Budget in bytes (a whole number of pages). */
  get capacityBytes(): number {
    return this.table.pageCount * this.table.pageBytes;
  }

  /**
   * A pinned lease on the chunk, fetched and decoded if needed. Call {@link release}
   * (or `table.unpin`) exactly once after copying. Rejects with the load's error, or
   * with the abort reason when `signal` fires first.
   */
  /**
   * The synchronous hit path of {@link acquire}: a pinned lease when the chunk is cached
   * (counted as a hit, LRU order updated), undefined otherwise (nothing counted: the
   * caller falls back to `acquire`). Lets a reader answer a cached read without a promise.
   */
  tryAcquire(digestHex: string, length: number): Lease | undefined {
    if (this.#closed) return undefined;
    const slot = this.#lru.get(digestHex);
    if (slot === undefined || this.table.field(slot, kLengthField) !== length) return undefined;
    return this.#hit(digestHex, slot);
  }

  /** A request served from a ready slot: counted, no longer unread readahead, pinned. */
  #hit(hex: string, slot: SlotIndex): Lease {
    this.#stats.hits++;
    this.#markRead(hex);
    this.table.pin(slot);
    return this.#leaseOf(slot);
  }

  acquire(request: ChunkRequest, signal?: AbortSignal): Promise<Lease> {
    if (this.#closed) return Promise.reject(closedError());
    if (signal?.aborted === true) return Promise.reject(abortError(signal));
    const hex = request.digestHex;
    const slot = this.#lru.get(hex);
    if (slot !== undefined) {
      const length = this.table.field(slot, kLengthField);
      if (length !== request.length) return Promise.reject(lengthMismatch(hex, length, request.length));
      return Promise.resolve(this.#hit(hex, slot));
    }
    let load = this.#loads.get(hex);
    const isNew = load === undefined;
    if (load === undefined) {
      if (this.#spill?.lengthOf(hex) === request.length) this.#stats.spillLoads++;
      else this.#stats.misses++;
      load = this.#newLoad(request, request.background !== true);
    } else if (load.length !== request.length) {
      return Promise.reject(lengthMismatch(hex, load.length, request.length));
    } else {
      this.#stats.dedupJoins++;
      this.#markRead(hex);
      if (request.background !== true) load.urgent = true;
    }
    const joined = load;
    const leased = new Promise<Lease>((resolve, reject) => {
      const onAbort = (): void => {
        if (joined.waiters.delete(waiter)) reject(abortError(signal));
      };
      const waiter: Waiter = {
        resolve: (lease) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(lease);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      joined.waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    // Start only once the waiter is registered: a load may end before its first await.
    if (isNew) void this.#runLoad(request, joined, undefined);
    // A fetched background load held for an urgent fetch may have just become urgent.
    else if (joined.urgent) this.#startDecodes();
    return leased;
  }

  /** Drops the pin of a lease. */
  release(lease: Lease): void {
    this.table.unpin(lease);
  }

  /**
   * Starts loading a chunk nobody waits for yet (readahead). Never waits and never
   * competes with waiting requests: returns false when the chunk is cached or loading,
   * when memory would have to be waited for, or when prefetched chunks not read yet
   * already hold {@link MAX_READAHEAD_CACHE_FRACTION} of the cache (all readers together).
   */
  prefetch(request: ChunkRequest): boolean {
    const hex = request.digestHex;
    if (this.#closed || this.#lru.has(hex) || this.#loads.has(hex)) return false;
    // A spilled chunk is a pread away: loading it ahead would only take memory.
    if (this.#spill?.has(hex) === true) return false;
    if (this.#allocWaiters.length > 0) return false;
    const pageCount = this.#pagesFor(request.length);
    const bytes = pageCount * this.table.pageBytes;
    if (this.#unreadBytes + bytes > this.capacityBytes * MAX_READAHEAD_CACHE_FRACTION) return false;
    const slot = this.#tryAllocate(pageCount);
    if (slot === undefined) return false;
    this.#stats.prefetches++;
    this.#unread.set(hex, bytes);
    this.#unreadBytes += bytes;
    void this.#runLoad(request, this.#newLoad(request, false), slot);
    return true;
  }

  /** A prefetched chunk was asked for: it no longer counts against the readahead budget. */
  #markRead(hex: string): boolean {
    const bytes = this.#unread.get(hex);
    if (bytes === undefined) return false;
    this.#unread.delete(hex);
    this.#unreadBytes -= bytes;
    return true;
  }

  /** True when the chunk is ready in the cache (does not touch LRU order). */
  has(digestHex: string): boolean {
    return this.#lru.has(digestHex);
  }

  /**
   * Reads `count` bytes at `chunkOffset` of a chunk straight from the spill file into
   * `target`, when the chunk is there and not in memory (memory is cheaper still).
   * Resolves false otherwise: the caller then acquires the chunk. This is how a chunk
   * evicted from memory is read again for the cost of a pread of the bytes asked for.
   */
  async readSpilled(
    digestHex: string,
    length: number,
    chunkOffset: number,
    target: Uint8Array,
    targetOffset: number,
    count: number,
  ): Promise<boolean> {
    const spill = this.#spill;
    if (spill === undefined || this.#closed || this.#lru.has(digestHex)) return false;
    if (spill.lengthOf(digestHex) !== length) return false;
    if (!(await spill.read(digestHex, chunkOffset, target, targetOffset, count))) return false;
    this.#stats.spillReads++;
    return true;
  }

  stats(): ChunkCacheStats {
    const usedPages = this.table.pageCount - this.#freePages.length;
    return {
      ...this.#stats,
      spill: this.#spill?.stats(),
      inFlight: this.#loads.size,
      cachedChunks: this.#lru.size,
      usedBytes: usedPages * this.table.pageBytes,
      capacityBytes: this.capacityBytes,
    };
  }

  /**
   * Rejects waiting requests and queued decodes, lets decodes already on a thread finish,
   * stops the decode pool. Open leases stay readable until released.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(closedError());
    for (const waiter of this.#allocWaiters.splice(0)) waiter.reject(closedError());
    for (const job of this.#decodeQueue.splice(0)) job.reject(closedError());
    Atomics.notify(this.table.header, kReleaseSeqField);
    // Decodes already on a thread take milliseconds: let them answer before the pool
    // stops (piscina reports an answer to a task it no longer knows as an 'error' event).
    if (this.#decoding > 0) await new Promise<void>((resolve) => this.#decodesDone.push(resolve));
    await this.#decoder.close();
    await this.#spill?.close();
  }

  /**
   * Walks every structure and throws if one invariant does not hold: each slot is free,
   * loading or ready exactly once; every page belongs to exactly one used slot or the
   * free list; shared fields agree with the bookkeeping; pins are never negative.
   * For tests (cheap enough to call after every step of a model test).
   */
  checkInvariants(): void {
    const fail = (what: string): never => {
      throw new Error(`cache invariant violated: ${what}`);
    };
    const slotOwner = new Map<number, string>();
    for (const slot of this.#freeSlots) {
      if (slotOwner.has(slot)) fail(`slot ${slot} twice on the free list`);
      slotOwner.set(slot, 'free');
      if (this.table.field(slot, kStateField) !== SlotState.free) fail(`free slot ${slot} not in state free`);
      if (this.table.pins(slot) !== 0) fail(`free slot ${slot} is pinned`);
    }
    for (const [hex, slot] of this.#lru.entries()) {
      if (slotOwner.has(slot)) fail(`slot ${slot} is ready (${hex}) and ${slotOwner.get(slot)}`);
      slotOwner.set(slot, hex);
      if (this.table.field(slot, kStateField) !== SlotState.ready)
        fail(`cached slot ${slot} not in state ready`);
    }
    let loadingSlots = 0;
    for (let slot = 0; slot < this.table.slotCount; slot++) {
      if (this.table.pins(slot as SlotIndex) < 0) fail(`slot ${slot} has negative pins`);
      if (this.table.field(slot as SlotIndex, kStateField) === SlotState.loading) {
        if (slotOwner.has(slot)) fail(`loading slot ${slot} is also ${slotOwner.get(slot)}`);
        loadingSlots++;
        slotOwner.set(slot, 'loading');
      }
    }
    if (slotOwner.size !== this.table.slotCount)
      fail(`${this.table.slotCount - slotOwner.size} slots are lost`);
    if (loadingSlots > this.#loads.size) fail(`${loadingSlots} loading slots for ${this.#loads.size} loads`);
    const pageOwner = new Int32Array(this.table.pageCount).fill(-1);
    for (const page of this.#freePages) {
      if (pageOwner[page] !== -1) fail(`page ${page} twice on the free list`);
      pageOwner[page] = this.table.slotCount;
    }
    for (let slot = 0; slot < this.table.slotCount; slot++) {
      const pages = this.#pageLists[slot];
      const state = this.table.field(slot as SlotIndex, kStateField);
      if ((pages === undefined) !== (state === SlotState.free))
        fail(`slot ${slot} page list does not match its state`);
      if (pages === undefined) continue;
      if (pages.length !== this.table.field(slot as SlotIndex, kPageCountField))
        fail(`slot ${slot} page count`);
      if (pages.length * this.table.pageBytes < this.table.field(slot as SlotIndex, kLengthField))
        fail(`slot ${slot} too small`);
      for (const page of pages) {
        if (pageOwner[page] !== -1) fail(`page ${page} owned twice`);
        pageOwner[page] = slot;
      }
    }
    if (pageOwner.includes(-1)) fail('a page is neither free nor owned');
  }

  #pagesFor(length: number): number {
    return Math.max(1, Math.ceil(length / this.table.pageBytes));
  }

  #leaseOf(slot: SlotIndex): Lease {
    return {
      slot,
      generation: this.table.field(slot, kGenerationField) as Generation,
      length: this.table.field(slot, kLengthField),
      pages: this.#pageLists[slot]!,
    };
  }

  #newLoad(request: ChunkRequest, urgent: boolean): Load {
    const load: Load = { waiters: new Set(), length: request.length, urgent };
    this.#loads.set(request.digestHex, load);
    return load;
  }

  async #runLoad(request: ChunkRequest, load: Load, preallocated: SlotIndex | undefined): Promise<void> {
    const hex = request.digestHex;
    let slot: SlotIndex | undefined = preallocated;
    try {
      const pageCount = this.#pagesFor(request.length);
      if (pageCount > this.table.pageCount) {
        throw new ReaderError(
          'ERR_LR_CHUNK_TOO_LARGE_FOR_CACHE',
          `chunk ${hex} needs ${request.length} bytes but the cache holds only ${this.capacityBytes}`,
        );
      }
      slot ??= await this.#allocate(pageCount);
      this.table.setField(slot, kLengthField, request.length);
      if (await this.#loadFromSpill(hex, request.length, slot)) this.#ready(hex, slot, load);
      else await this.#fetchAndDecode(request, load, slot);
    } catch (err) {
      this.#loads.delete(hex);
      this.#markRead(hex);
      if (slot !== undefined) this.#freeSlot(slot);
      this.#stats.failures++;
      // A load cut short by close() fails because of the close, whatever broke first.
      const reason = this.#closed ? closedError() : err;
      for (const waiter of load.waiters) waiter.reject(reason);
    }
    // A load that ended may have left an unpinned slot (no waiters) or freed pages.
    this.#pump();
  }

  /** Fetches the chunk's blob from its source and decodes it into the loading slot. */
  async #fetchAndDecode(request: ChunkRequest, load: Load, slot: SlotIndex): Promise<void> {
    const hex = request.digestHex;
    this.#fetching.add(load);
    let blob: Uint8Array;
    try {
      blob = await request.source.fetchChunk(hex, this.#closing.signal, load);
    } catch (err) {
      this.#fetching.delete(load);
      // Background decodes held for this fetch may start now (see #startDecodes).
      if (load.urgent) this.#startDecodes();
      throw err;
    }
    // A blob that came is queued (urgent first) before anything held for it is started.
    this.#fetching.delete(load);
    const result = await this.#decode(
      load,
      {
        blob,
        digestHex: hex,
        length: request.length,
        pages: this.#pageLists[slot]!,
        ...(request.key === undefined ? {} : { key: request.key }),
      },
      request.source.blobsAreTransferable === true,
    );
    if (!result.ok) throw fromErrorRecord(result.error);
    this.#stats.bytesDecoded += request.length;
    this.#ready(hex, slot, load);
  }

  /** A loaded slot becomes a cached chunk: every waiter gets a pinned lease. */
  #ready(hex: string, slot: SlotIndex, load: Load): void {
    if (this.#closed) throw closedError();
    this.table.setField(slot, kStateField, SlotState.ready);
    this.#loads.delete(hex);
    this.#lru.set(hex, slot);
    for (const waiter of load.waiters) {
      this.table.pin(slot);
      waiter.resolve(this.#leaseOf(slot));
    }
    this.#spillAhead();
  }

  /** Fills a loading slot from the spill file; false when the chunk is not there (any more). */
  async #loadFromSpill(hex: string, length: number, slot: SlotIndex): Promise<boolean> {
    const spill = this.#spill;
    if (spill === undefined || spill.lengthOf(hex) !== length) return false;
    const pages = this.#pageLists[slot]!;
    const pageBytes = this.table.pageBytes;
    const reads: Promise<boolean>[] = [];
    for (let i = 0; i < pages.length; i++) {
      const count = Math.min(pageBytes, length - i * pageBytes);
      reads.push(spill.read(hex, i * pageBytes, this.table.arena, pages[i]! * pageBytes, count));
    }
    return (await Promise.all(reads)).every(Boolean);
  }

  /**
   * Keeps the least recently used {@link SPILL_AHEAD_CACHE_FRACTION} of the cache written
   * to the spill file, a few writes at a time, so evictions find chunks they can drop.
   */
  #spillAhead(): void {
    if (this.#spill === undefined || this.#closed) return;
    const limit = this.capacityBytes * SPILL_AHEAD_CACHE_FRACTION;
    // With that much memory still free no eviction is near: writing now could be wasted.
    if (this.#freePages.length * this.table.pageBytes >= limit) return;
    let bytes = 0;
    for (const hex of this.#lru.rkeys()) {
      if (this.#spilling.size >= SPILL_AHEAD_WRITES || bytes >= limit) return;
      const slot = this.#lru.peek(hex)!;
      bytes += this.#pageLists[slot]!.length * this.table.pageBytes;
      if (!this.#evictable(hex)) this.#startSpill(hex, slot);
    }
  }

  /** True when dropping the chunk from memory loses no decode work. */
  #evictable(hex: string): boolean {
    return this.#spill === undefined || this.#unspillable.has(hex) || this.#spill.has(hex);
  }

  /** Writes a ready chunk to the spill file, holding a pin so it stays put meanwhile. */
  #startSpill(hex: string, slot: SlotIndex): void {
    const spill = this.#spill;
    if (spill === undefined || this.#spilling.has(hex) || spill.holdsOrWrites(hex)) return;
    this.#spilling.add(hex);
    this.table.pin(slot);
    void spill
      .put(hex, this.table.field(slot, kLengthField), this.table.arena, this.#pageLists[slot]!)
      .then((stored) => {
        if (!stored) this.#unspillable.add(hex);
        this.#spilling.delete(hex);
        // The unpin wakes an allocation waiting for this chunk to become evictable.
        this.table.unpinSlot(slot);
        this.#spillAhead();
      });
  }

  /** Queues a decode; it starts when a thread is free, urgent loads first. */
  #decode(load: Load, task: DecodeTask, takeBlob: boolean): Promise<DecodeResult> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise<DecodeResult>((resolve, reject) => {
      this.#decodeQueue.push({ load, task, takeBlob, resolve, reject });
      this.#startDecodes();
    });
  }

  /**
   * Hands queued decodes to free threads: urgent ones first, and background ones only
   * while no urgent blob is on its way. A guest's miss then finds a thread free and the
   * cores idle when its blob arrives, instead of waiting for the decodes started while
   * it was on the wire; the background work waits about one blob's transfer time, during
   * which the source holds background fetches back too.
   */
  #startDecodes(): void {
    const threads = Math.max(1, this.#decoder.threads);
    while (this.#decoding < threads && this.#decodeQueue.length > 0) {
      const urgent = this.#decodeQueue.findIndex((job) => job.load.urgent);
      if (urgent < 0 && this.#urgentFetching()) break;
      // The first urgent job, else the oldest (findIndex gives -1 when none is urgent).
      const job = this.#decodeQueue.splice(Math.max(urgent, 0), 1)[0]!;
      this.#decoding++;
      this.#decoder
        .decode(job.task, job.takeBlob)
        .then(job.resolve, job.reject)
        .finally(() => {
          if (--this.#decoding === 0) for (const done of this.#decodesDone.splice(0)) done();
          this.#startDecodes();
        });
    }
  }

  #urgentFetching(): boolean {
    for (const load of this.#fetching) if (load.urgent) return true;
    return false;
  }

  #allocate(pageCount: number): Promise<SlotIndex> {
    if (this.#allocWaiters.length === 0) {
      const slot = this.#tryAllocate(pageCount);
      if (slot !== undefined) return Promise.resolve(slot);
    }
    if (this.#closed) return Promise.reject(closedError());
    this.#stats.memoryWaits++;
    return new Promise<SlotIndex>((resolve, reject) => {
      this.#allocWaiters.push({ pageCount, resolve, reject });
      this.#pump();
    });
  }

  /** Takes a free slot and pages, evicting least recently used unpinned chunks as needed. */
  #tryAllocate(pageCount: number): SlotIndex | undefined {
    if (this.#freePages.length < pageCount || this.#freeSlots.length === 0) this.#evict(pageCount);
    if (this.#freePages.length < pageCount || this.#freeSlots.length === 0) return undefined;
    const slot = this.#freeSlots.pop()!;
    const pages = Int32Array.from(this.#freePages.splice(this.#freePages.length - pageCount, pageCount));
    this.#pageLists[slot] = pages;
    this.table.setField(slot, kGenerationField, (this.table.field(slot, kGenerationField) + 1) | 0);
    this.table.setField(slot, kPageCountField, pageCount);
    this.table.setField(slot, kLengthField, 0);
    this.table.setField(slot, kStateField, SlotState.loading);
    return slot;
  }

  /**
   * Frees least recently used unpinned chunks until `pageCount` pages and a slot are free.
   * A chunk not yet in the spill file is written there first: it is skipped now, and the
   * end of its write (an unpin) wakes the allocation that waits for it.
   */
  #evict(pageCount: number): void {
    let freePages = this.#freePages.length;
    let freeSlots = this.#freeSlots.length;
    const victims: string[] = [];
    for (const hex of this.#lru.rkeys()) {
      if (freePages >= pageCount && freeSlots > 0) break;
      const slot = this.#lru.peek(hex)!;
      if (this.table.pins(slot) !== 0) continue;
      if (!this.#evictable(hex)) {
        this.#startSpill(hex, slot);
        continue;
      }
      victims.push(hex);
      freePages += this.#pageLists[slot]!.length;
      freeSlots++;
    }
    if (freePages < pageCount || freeSlots === 0) return; // evicting would not be enough: keep the data
    for (const hex of victims) {
      const slot = this.#lru.peek(hex)!;
      this.#lru.delete(hex);
      this.#unspillable.delete(hex);
      this.#freeSlot(slot);
      this.#stats.evictions++;
      if (this.#markRead(hex)) this.#stats.prefetchesUnused++;
    }
  }

  #freeSlot(slot: SlotIndex): void {
    const pages = this.#pageLists[slot]!;
    this.#pageLists[slot] = undefined;
    for (let i = pages.length - 1; i >= 0; i--) this.#freePages.push(pages[i]!);
    this.table.setField(slot, kStateField, SlotState.free);
    this.table.setField(slot, kLengthField, 0);
    this.table.setField(slot, kPageCountField, 0);
    this.#freeSlots.push(slot);
  }

  /** Serves waiting allocations in order; arms a wait for the next unpin if the head cannot be served. */
  #pump(): void {
    while (this.#allocWaiters.length > 0 && !this.#closed) {
      const seq = Atomics.load(this.table.header, kReleaseSeqField);
      const head = this.#allocWaiters[0]!;
      const slot = this.#tryAllocate(head.pageCount);
      if (slot === undefined) {
        this.#waitForRelease(seq);
        return;
      }
      this.#allocWaiters.shift();
      head.resolve(slot);
    }
  }

  #waitForRelease(seq: number): void {
    if (this.#waitingForRelease) return;
    const result = waitAsync(this.table.header, kReleaseSeqField, seq);
    if (!result.async) {
      queueMicrotask(() => this.#pump());
      return;
    }
    this.#waitingForRelease = true;
    void result.value.then(() => {
      this.#waitingForRelease = false;
      this.#pump();
    });
  }
}

/** `Atomics.waitAsync` (ES2024; in Node.js since 16) without raising the project's lib to ES2024. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      array: Int32Array,
      index: number,
      value: number,
    ): { async: false; value: string } | { async: true; value: Promise<string> };
  }
).waitAsync;

function lengthMismatch(hex: string, actual: number, expected: number): LiverestoreError {
  return new LiverestoreError(
    'ERR_LR_CHUNK_LENGTH_MISMATCH',
    `chunk ${hex} holds ${actual} bytes, the index expects ${expected}`,
  );
}

function closedError(): ReaderError {
  return new ReaderError('ERR_LR_CACHE_CLOSED', 'the chunk cache is closed');
}
