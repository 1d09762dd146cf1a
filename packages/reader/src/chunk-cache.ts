/*
 * The cache's coordinator. Over 400 lines on purpose: it is the load lifecycle (acquire,
 * prefetch, spill reads, fetch and decode, memory waits, close), which one thread owns
 * and which reads best in one place; memory, decode order, readahead and spilling are
 * in page-arena.ts, decode-scheduler.ts, readahead-budget.ts and spill-writer.ts.
 */
import { availableParallelism } from 'node:os';
import { LiverestoreError } from '@liverestore/format';
import {
  type ChunkCacheOptions,
  type ChunkCacheStats,
  type ChunkRequest,
  DEFAULT_CACHE_BYTES,
  MAX_READAHEAD_CACHE_FRACTION,
} from './chunk-cache-options.js';
import type { FetchHints } from './chunk-source.js';
import type { FileTarget } from './data-extents.js';
import { DecodeScheduler } from './decode-scheduler.js';
import { type ChunkDecoder, inlineDecoder, poolDecoder } from './decoder.js';
import { abortError, fromErrorRecord, ReaderError } from './errors.js';
import { PageArena } from './page-arena.js';
import { ReadaheadBudget } from './readahead-budget.js';
import {
  DEFAULT_PAGE_BYTES,
  kLengthField,
  kReleaseSeqField,
  type Lease,
  type SharedCacheMemory,
  type SlotIndex,
  type SlotTable,
} from './slot-table.js';
import { SpillWriter } from './spill-writer.js';

interface Waiter {
  resolve(lease: Lease): void;
  reject(err: unknown): void;
}

/** A chunk being fetched and decoded; its `urgent` flag is the live hint its fetch and decode read. */
interface Load extends FetchHints {
  readonly waiters: Set<Waiter>;
  /** Plaintext length the index expects; every joiner must expect the same. */
  readonly length: number;
  /** A reader outside any sequential stream waits for it; raised when one joins, never lowered. */
  urgent: boolean;
}

interface AllocWaiter {
  readonly pageCount: number;
  readonly load: Load;
  resolve(slot: SlotIndex): void;
  reject(err: unknown): void;
}

function checkPositiveInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
}

/**
 * The shared chunk cache: a coordinator actor over a page arena in shared memory
 * ({@link PageArena}), a decode scheduler ({@link DecodeScheduler}), a readahead budget
 * ({@link ReadaheadBudget}) and, optionally, a spill file ({@link SpillWriter}, the arena's
 * eviction hook).
 *
 * It is the only writer of cache bookkeeping (ready chunks, loads in flight, free lists,
 * slot states), so it needs no locks: everything runs on the thread that created it.
 * Readers in this thread call it directly; readers in other threads reach it through
 * {@link exportArchive}. Either way a reader gets a pinned {@link Lease} and copies out of
 * shared memory itself.
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
 * - With a spill file, a chunk leaves memory only once the file holds it, and is read
 *   back from there: no chunk is fetched and decoded twice while the file keeps it.
 */
export class ChunkCache {
  readonly table: SlotTable;
  readonly memory: SharedCacheMemory;
  readonly #arena: PageArena;
  readonly #decoder: ChunkDecoder;
  readonly #decodes: DecodeScheduler;
  readonly #readahead: ReadaheadBudget;
  readonly #spill: SpillWriter | undefined;
  readonly #loads = new Map<string, Load>();
  readonly #allocWaiters: AllocWaiter[] = [];
  readonly #closing = new AbortController();
  /**
   * Loads that have memory and whose blob is on its way (from the source or the spill
   * file). A load joins the moment it gets memory, so held background decodes see an
   * urgent load that was just given memory as on its way.
   */
  readonly #awaitingBlob = new Set<Load>();
  #waitingForRelease = false;
  #closed = false;
  readonly #stats = {
    hits: 0,
    misses: 0,
    dedupJoins: 0,
    prefetches: 0,
    prefetchesUnused: 0,
    bytesDecoded: 0,
    failures: 0,
    memoryWaits: 0,
    spillReads: 0,
    spillLoads: 0,
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

    this.#arena = new PageArena(pageCount, pageBytes, {
      mayEvict: (key, slot) => this.#spill?.mayEvict(key, slot) ?? true,
      evicted: (key) => {
        this.#spill?.evicted(key);
        if (this.#readahead.markRead(key)) this.#stats.prefetchesUnused++;
      },
    });
    this.table = this.#arena.table;
    this.memory = this.#arena.memory;
    this.#spill = options.spill === undefined ? undefined : new SpillWriter(options.spill, this.#arena);
    this.#readahead = new ReadaheadBudget(this.#arena.capacityBytes * MAX_READAHEAD_CACHE_FRACTION);
    this.#decoder = workers === 0 ? inlineDecoder(this.table) : poolDecoder(this.memory, workers);
    this.#decodes = new DecodeScheduler(this.#decoder, () => this.#urgentFetching());
  }

  /** The decoder, for diagnostics and fault tests (its piscina pool when workers > 0). */
  get decoder(): ChunkDecoder {
    return this.#decoder;
  }

  /** Budget in bytes (a whole number of pages). */
  get capacityBytes(): number {
    return this.#arena.capacityBytes;
  }

  /**
   * The synchronous hit path of {@link acquire}: a pinned lease when the chunk is cached
   * (counted as a hit, LRU order updated), undefined otherwise (nothing counted: the
   * caller falls back to `acquire`). Lets a reader answer a cached read without a promise.
   */
  tryAcquire(digestHex: string, length: number): Lease | undefined {
    if (this.#closed) return undefined;
    const slot = this.#arena.get(digestHex);
    if (slot === undefined || this.table.field(slot, kLengthField) !== length) return undefined;
    return this.#hit(digestHex, slot);
  }

  /** A request served from a ready slot: counted, no longer unread readahead, pinned. */
  #hit(hex: string, slot: SlotIndex): Lease {
    this.#stats.hits++;
    this.#readahead.markRead(hex);
    this.table.pin(slot);
    return this.#arena.leaseOf(slot);
  }

  /**
   * A pinned lease on the chunk, fetched and decoded (or read back from the spill file) if
   * needed. Call {@link release} (or `table.unpin`) exactly once after copying. Rejects
   * with the load's error, or with the abort reason when `signal` fires first.
   */
  acquire(request: ChunkRequest, signal?: AbortSignal): Promise<Lease> {
    if (this.#closed) return Promise.reject(closedError());
    if (signal?.aborted === true) return Promise.reject(abortError(signal));
    const hex = request.digestHex;
    const slot = this.#arena.get(hex);
    if (slot !== undefined) {
      const length = this.table.field(slot, kLengthField);
      if (length !== request.length) return Promise.reject(lengthMismatch(hex, length, request.length));
      return Promise.resolve(this.#hit(hex, slot));
    }
    let load = this.#loads.get(hex);
    const isNew = load === undefined;
    if (load === undefined) {
      if (this.#spill?.spill.lengthOf(hex) === request.length) this.#stats.spillLoads++;
      else this.#stats.misses++;
      load = this.#newLoad(request, request.background !== true);
    } else if (load.length !== request.length) {
      return Promise.reject(lengthMismatch(hex, load.length, request.length));
    } else {
      this.#stats.dedupJoins++;
      this.#readahead.markRead(hex);
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
    else if (joined.urgent) this.#decodes.pump();
    return leased;
  }

  /** Drops the pin of a lease. */
  release(lease: Lease): void {
    this.table.unpin(lease);
  }

  /**
   * Starts loading a chunk nobody waits for yet (readahead). Never waits and never
   * competes with waiting requests: returns false when the chunk is cached, loading or
   * spilled (a pread away), when memory would have to be waited for, or when prefetched
   * chunks not read yet already hold {@link MAX_READAHEAD_CACHE_FRACTION} of the cache (all
   * readers together).
   */
  prefetch(request: ChunkRequest): boolean {
    const hex = request.digestHex;
    if (this.#closed || this.#arena.has(hex) || this.#loads.has(hex)) return false;
    if (this.#spill?.spill.has(hex) === true) return false;
    if (this.#allocWaiters.length > 0) return false;
    const pageCount = this.#arena.pagesFor(request.length);
    if (!this.#readahead.admit(hex, pageCount * this.table.pageBytes)) return false;
    const slot = this.#arena.tryAllocate(pageCount);
    if (slot === undefined) {
      this.#readahead.markRead(hex);
      return false;
    }
    this.#stats.prefetches++;
    void this.#runLoad(request, this.#newLoad(request, false), slot);
    return true;
  }

  /** True when the chunk is ready in the cache (does not touch LRU order). */
  has(digestHex: string): boolean {
    return this.#arena.has(digestHex);
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
    const spill = this.#spill?.spill;
    if (spill === undefined || this.#closed || this.#arena.has(digestHex)) return false;
    if (spill.lengthOf(digestHex) !== length) return false;
    if (!(await spill.read(digestHex, chunkOffset, target, targetOffset, count))) return false;
    this.#stats.spillReads++;
    return true;
  }

  /**
   * Fetches a chunk and has a decode thread verify it and write the plaintext at every
   * offset of `file`, past the arena: a restore's bytes need no slot, no copy out and no
   * trip through this thread. A background load: urgent loads of other readers go first.
   * Nothing is shared with cached or loading copies of the chunk (a restore reads each
   * chunk once). Resolves with the bytes written; `signal` cancels the fetch and a decode
   * still waiting for a thread, never one that runs, so once this settles no thread
   * writes to `file.fd` for it any more.
   */
  async decodeToFile(request: ChunkRequest, file: FileTarget, signal?: AbortSignal): Promise<number> {
    // A function, so that the checks after each await are not narrowed away.
    const aborted = (): boolean => signal?.aborted === true;
    if (this.#closed) throw closedError();
    if (aborted()) throw abortError(signal);
    const hex = request.digestHex;
    this.#stats.misses++;
    const hints: FetchHints = { urgent: false };
    try {
      const blob = await request.source.fetchChunk(
        hex,
        signal === undefined ? this.#closing.signal : AbortSignal.any([this.#closing.signal, signal]),
        hints,
      );
      if (this.#closed) throw closedError();
      if (aborted()) throw abortError(signal);
      const result = await this.#decodes.decodeToFile(
        hints,
        {
          blob,
          digestHex: hex,
          length: request.length,
          file,
          ...(request.key === undefined ? {} : { key: request.key }),
        },
        request.source.blobsAreTransferable === true,
      );
      if (!result.ok) throw fromErrorRecord(result.error);
      this.#stats.bytesDecoded += request.length;
      return result.bytesWritten;
    } catch (err) {
      this.#stats.failures++;
      if (this.#closed) throw closedError();
      throw aborted() ? abortError(signal) : err;
    } finally {
      // The scheduler's contract: the owner starts the next decode once it has the result.
      this.#decodes.pump();
    }
  }

  stats(): ChunkCacheStats {
    return {
      ...this.#stats,
      evictions: this.#arena.evictions,
      spill: this.#spill?.spill.stats(),
      inFlight: this.#loads.size,
      cachedChunks: this.#arena.readyCount,
      usedBytes: this.#arena.capacityBytes - this.#arena.freeBytes,
      capacityBytes: this.capacityBytes,
    };
  }

  /**
   * Rejects waiting requests and queued decodes, lets decodes already on a thread finish,
   * stops the decode pool, closes the spill file. Open leases stay readable until released.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(closedError());
    for (const waiter of this.#allocWaiters.splice(0)) waiter.reject(closedError());
    this.#decodes.rejectQueued(closedError());
    Atomics.notify(this.table.header, kReleaseSeqField);
    // Decodes already on a thread take milliseconds: let them answer before the pool
    // stops (piscina reports an answer to a task it no longer knows as an 'error' event).
    await this.#decodes.idle();
    await this.#decoder.close();
    await this.#spill?.close();
  }

  /**
   * Walks every structure and throws if one invariant does not hold (see
   * {@link PageArena.checkInvariants}; the spill file's too). For tests (cheap enough to
   * call after every step of a model test).
   */
  checkInvariants(): void {
    this.#arena.checkInvariants(this.#loads.size);
    this.#spill?.spill.checkInvariants();
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
      const pageCount = this.#arena.pagesFor(request.length);
      if (pageCount > this.table.pageCount) {
        throw new ReaderError(
          'ERR_LR_CHUNK_TOO_LARGE_FOR_CACHE',
          `chunk ${hex} needs ${request.length} bytes but the cache holds only ${this.capacityBytes}`,
        );
      }
      slot ??= await this.#allocate(pageCount, load);
      this.#awaitingBlob.add(load);
      this.table.setField(slot, kLengthField, request.length);
      if (!(await this.#loadFromSpill(hex, request.length, slot, load)))
        await this.#fetchAndDecode(request, load, slot);
      this.#ready(hex, slot, load);
    } catch (err) {
      this.#awaitingBlob.delete(load);
      this.#loads.delete(hex);
      this.#readahead.markRead(hex);
      if (slot !== undefined) this.#arena.free(slot);
      this.#stats.failures++;
      // A load cut short by close() fails because of the close, whatever broke first.
      const reason = this.#closed ? closedError() : err;
      for (const waiter of load.waiters) waiter.reject(reason);
    }
    // A load that ended may have left an unpinned slot (no waiters) or freed pages; then
    // decodes held for its fetch may start, unless a load that got memory now is urgent.
    this.#pump();
    this.#decodes.pump();
  }

  /** Fetches the chunk's blob from its source and decodes it into the loading slot. */
  async #fetchAndDecode(request: ChunkRequest, load: Load, slot: SlotIndex): Promise<void> {
    const hex = request.digestHex;
    let blob: Uint8Array;
    try {
      blob = await request.source.fetchChunk(hex, this.#closing.signal, load);
    } finally {
      // A blob that came is queued (urgent first) before anything held for it is started;
      // after a failed fetch, held decodes are looked at once the load has ended (#runLoad).
      this.#awaitingBlob.delete(load);
    }
    if (this.#closed) throw closedError();
    const result = await this.#decodes.decode(
      load,
      {
        blob,
        digestHex: hex,
        length: request.length,
        pages: this.#arena.pages(slot),
        ...(request.key === undefined ? {} : { key: request.key }),
      },
      request.source.blobsAreTransferable === true,
    );
    if (!result.ok) throw fromErrorRecord(result.error);
    this.#stats.bytesDecoded += request.length;
  }

  /** Fills a loading slot from the spill file; false when the chunk is not there (any more). */
  async #loadFromSpill(hex: string, length: number, slot: SlotIndex, load: Load): Promise<boolean> {
    const spill = this.#spill?.spill;
    if (spill === undefined || spill.lengthOf(hex) !== length) return false;
    const pages = this.#arena.pages(slot);
    const pageBytes = this.table.pageBytes;
    const reads: Promise<boolean>[] = [];
    for (let i = 0; i < pages.length; i++) {
      const count = Math.min(pageBytes, length - i * pageBytes);
      reads.push(spill.read(hex, i * pageBytes, this.table.arena, pages[i]! * pageBytes, count));
    }
    const whole = (await Promise.all(reads)).every(Boolean);
    if (whole) this.#awaitingBlob.delete(load);
    return whole;
  }

  /** A loaded slot becomes a cached chunk: every waiter gets a pinned lease. */
  #ready(hex: string, slot: SlotIndex, load: Load): void {
    if (this.#closed) throw closedError();
    this.#arena.markReady(hex, slot);
    this.#loads.delete(hex);
    for (const waiter of load.waiters) {
      this.table.pin(slot);
      waiter.resolve(this.#arena.leaseOf(slot));
    }
    this.#spill?.writeAhead();
  }

  #urgentFetching(): boolean {
    for (const load of this.#awaitingBlob) if (load.urgent) return true;
    return false;
  }

  #allocate(pageCount: number, load: Load): Promise<SlotIndex> {
    if (this.#allocWaiters.length === 0) {
      const slot = this.#arena.tryAllocate(pageCount);
      if (slot !== undefined) return Promise.resolve(slot);
    }
    if (this.#closed) return Promise.reject(closedError());
    this.#stats.memoryWaits++;
    return new Promise<SlotIndex>((resolve, reject) => {
      this.#allocWaiters.push({ pageCount, load, resolve, reject });
      this.#pump();
    });
  }

  /** Serves waiting allocations in order; arms a wait for the next unpin if the head cannot be served. */
  #pump(): void {
    while (this.#allocWaiters.length > 0 && !this.#closed) {
      const seq = Atomics.load(this.table.header, kReleaseSeqField);
      const head = this.#allocWaiters[0]!;
      const slot = this.#arena.tryAllocate(head.pageCount);
      if (slot === undefined) {
        this.#waitForRelease(seq);
        return;
      }
      this.#allocWaiters.shift();
      this.#awaitingBlob.add(head.load);
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
