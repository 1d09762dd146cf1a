/*
 * The cache's coordinator: the load lifecycle (acquire, prefetch, spill reads, fetch and
 * decode, close), which one thread owns. Memory is in page-arena.ts, memory waits in
 * allocation-queue.ts, a load and its waiters in chunk-load.ts, decode order in
 * decode-scheduler.ts, blob memory between fetch and decode in blob-budget.ts, readahead
 * in readahead-budget.ts, spilling in spill-writer.ts, lending in lent-chunks.ts, a blob
 * decoded as it arrives in arriving-blob.ts. About 630 lines on purpose: what is left is
 * the public surface (each method a few lines of delegation) and the one load lifecycle
 * that ties those pieces together; splitting the lifecycle would put its ordering rules
 * (who gets memory, when a decode thread is refilled, when a damaged blob is fetched
 * again) in several files.
 */
import { LiverestoreError } from '@liverestore/format';
import type { BodyMemory } from '@liverestore/format/internal';
import { AllocationQueue } from './allocation-queue.js';
import { ArrivingBlob, SharedBlobMemory } from './arriving-blob.js';
import { BlobBudget, blobChargeBytes } from './blob-budget.js';
import { BlobPool } from './blob-pool.js';
import {
  type ChunkCacheOptions,
  type ChunkCacheStats,
  type ChunkRequest,
  checkCacheOptions,
  MAX_LENT_CACHE_FRACTION,
  MAX_READAHEAD_CACHE_FRACTION,
} from './chunk-cache-options.js';
import { ChunkLoad } from './chunk-load.js';
import type { FetchHints } from './chunk-source.js';
import type { FileTarget } from './data-extents.js';
import { DecodeScheduler } from './decode-scheduler.js';
import type { ChunkBlobTask, DecodeResult } from './decode-worker.js';
import { type ChunkDecoder, inlineDecoder, poolDecoder } from './decoder.js';
import { abortError, fromErrorRecord, ReaderError } from './errors.js';
import { LentChunks } from './lent-chunks.js';
import type { ChunkLoadRecord } from './load-record.js';
import { PageArena } from './page-arena.js';
import { ReadaheadBudget } from './readahead-budget.js';
import {
  kLengthField,
  type Lease,
  type SharedCacheMemory,
  type SlotIndex,
  type SlotTable,
} from './slot-table.js';
import { SpillWriter } from './spill-writer.js';

/** Set by ChunkCache's static block: the one door to its private table and memory. */
let cacheInternals: (cache: ChunkCache) => ChunkCacheInternals;

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
 *   because readers never hold a pin while they wait for another chunk. Blobs between
 *   fetch and decode never exceed `blobBudgetBytes` ({@link BlobBudget}): a load with
 *   pages waits there before its fetch.
 * - Loads a reader outside any sequential stream waits for (a guest's random read) are
 *   urgent: their fetch goes first on the source's link ({@link FetchHints}) and their
 *   decode goes first here, where decodes wait for a free thread rather than in the pool.
 * - With a spill file, a chunk leaves memory only once the file holds it, and is read
 *   back from there: no chunk is fetched and decoded twice while the file keeps it.
 */
export class ChunkCache {
  static {
    cacheInternals = (cache) => ({ table: cache.#table, memory: cache.#memory, decodes: cache.#decodes });
  }

  readonly #table: SlotTable;
  readonly #memory: SharedCacheMemory;
  readonly #arena: PageArena;
  readonly #decoder: ChunkDecoder;
  readonly #decodes: DecodeScheduler;
  readonly #readahead: ReadaheadBudget;
  readonly #spill: SpillWriter | undefined;
  readonly #loads = new Map<string, ChunkLoad>();
  readonly #allocations: AllocationQueue<ChunkLoad>;
  /** Bytes of blobs between fetch and decode: reserved after pages, before the fetch. */
  readonly #blobs: BlobBudget;
  /** Memory of blobs, used again once decoded (as much as the budget, kept free at most). */
  readonly #blobPool: BlobPool;
  /** ChunkCacheOptions.decodeAsArriving. */
  readonly #decodeAsArriving: boolean;
  /** Memory of blobs decoded as they arrive (shared with the decode threads). */
  readonly #sharedBlobs = new SharedBlobMemory();
  readonly #closing = new AbortController();
  /**
   * Loads that have memory and whose blob is on its way (from the source or the spill
   * file). A load joins the moment it gets memory, so held background decodes see an
   * urgent load that was just given memory as on its way.
   */
  readonly #awaitingBlob = new Set<ChunkLoad>();
  /** Lent pins by slot (see {@link lend}), and the bytes of the chunks they hold. */
  readonly #lent: LentChunks;
  readonly #onLoad: ((record: ChunkLoadRecord) => void) | undefined;
  #closed = false;
  readonly #stats = {
    hits: 0,
    misses: 0,
    dedupJoins: 0,
    prefetches: 0,
    prefetchesUnused: 0,
    bytesDecoded: 0,
    failures: 0,
    spillReads: 0,
    spillLoads: 0,
    discardedBlobs: 0,
  };

  constructor(options: ChunkCacheOptions = {}) {
    const { pageBytes, pageCount, workers, blobBudgetBytes } = checkCacheOptions(options);
    this.#blobs = new BlobBudget(blobBudgetBytes);
    this.#blobPool = new BlobPool(blobBudgetBytes);
    const spillWriter = (): SpillWriter | undefined => this.#spill;
    this.#arena = new PageArena(pageCount, pageBytes, {
      mayEvict: (key, slot, save) => this.#spill?.mayEvict(key, slot, save) ?? true,
      get savingPages() {
        return spillWriter()?.savingPages ?? 0;
      },
      evicted: (key) => {
        this.#spill?.evicted(key);
        if (this.#readahead.markRead(key)) this.#stats.prefetchesUnused++;
      },
    });
    this.#allocations = new AllocationQueue<ChunkLoad>(this.#arena, (load) => this.#awaitingBlob.add(load));
    this.#table = this.#arena.table;
    this.#lent = new LentChunks(
      this.capacityBytes * MAX_LENT_CACHE_FRACTION,
      (slot) => this.#arena.pages(slot).length * this.#table.pageBytes,
    );
    this.#memory = this.#arena.memory;
    this.#spill = options.spill === undefined ? undefined : new SpillWriter(options.spill, this.#arena);
    this.#readahead = new ReadaheadBudget(this.#arena.capacityBytes * MAX_READAHEAD_CACHE_FRACTION);
    this.#decoder =
      workers === 0
        ? inlineDecoder(this.#table, this.#blobPool)
        : poolDecoder(this.#memory, workers, this.#blobPool);
    this.#decodes = new DecodeScheduler(this.#decoder, () => this.#urgentFetching());
    this.#onLoad = options.onLoad;
    // Before anything can allocate: every page is free.
    if (options.prefault === true) this.#arena.mapAllPages();
    this.#decodeAsArriving = options.decodeAsArriving === true;
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
    if (slot === undefined || this.#table.field(slot, kLengthField) !== length) return undefined;
    return this.#hit(digestHex, slot);
  }

  /** A request served from a ready slot: counted, no longer unread readahead, pinned. */
  #hit(hex: string, slot: SlotIndex): Lease {
    this.#stats.hits++;
    this.#readahead.markRead(hex);
    this.#table.pin(slot);
    return this.#arena.leaseOf(slot);
  }

  /**
   * A pinned lease on the chunk, fetched and decoded (or read back from the spill file) if
   * needed. Copy with {@link copyOut}, then call {@link release} exactly once. Rejects
   * with the load's error, or with the abort reason when `signal` fires first.
   */
  acquire(request: ChunkRequest, signal?: AbortSignal): Promise<Lease> {
    if (this.#closed) return Promise.reject(closedError());
    if (signal?.aborted === true) return Promise.reject(abortError(signal));
    const hex = request.digestHex;
    const slot = this.#arena.get(hex);
    if (slot !== undefined) {
      const length = this.#table.field(slot, kLengthField);
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
      if (request.background !== true && !load.urgent) {
        load.raiseUrgency();
        // A load waiting for blob bytes may have just become urgent: served first now.
        this.#blobs.pump();
      }
    }
    const leased = load.join(signal);
    // Start only once the waiter is registered: a load may end before its first await.
    if (isNew) void this.#runLoad(request, load, undefined);
    // A fetched background load held for an urgent fetch may have just become urgent.
    else if (load.urgent) this.#decodes.pump();
    return leased;
  }

  /**
   * Copies `count` bytes at `chunkOffset` of a leased chunk into `target` (shared memory to
   * the caller's buffer); throws if the lease was already released.
   */
  copyOut(lease: Lease, chunkOffset: number, target: Uint8Array, targetOffset: number, count: number): void {
    this.#table.copyOut(lease, chunkOffset, target, targetOffset, count);
  }

  /** Drops the pin of a lease. */
  release(lease: Lease): void {
    this.#table.unpin(lease);
  }

  /**
   * Turns the pin of `lease` into a lent one: the reader keeps the chunk's pages after its
   * read returns (an NBD reply written from them, a region stored from them) instead of
   * copying. Refused (false: copy and release as usual) when lent chunks would hold more
   * than {@link MAX_LENT_CACHE_FRACTION} of the cache, each chunk counted once, so replies
   * that clients never read cannot take the memory loads need. Give it back with
   * {@link returnLent}, not release.
   */
  lend(lease: Lease): boolean {
    return this.#lent.lend(lease.slot);
  }

  /** Drops the pin of a lease {@link lend} lent. */
  returnLent(lease: Lease): void {
    this.#lent.giveBack(lease.slot);
    this.#table.unpin(lease);
  }

  /**
   * Starts loading a chunk nobody waits for yet (readahead). Never waits and never
   * competes with waiting requests: returns false when the chunk is cached, loading or
   * spilled (a pread away), when memory would have to be waited for (cache pages, or blob
   * bytes an urgent load waits for: a readahead load would hold its pages idle in that
   * queue), or when prefetched chunks not read yet already hold
   * {@link MAX_READAHEAD_CACHE_FRACTION} of the cache (all readers together).
   */
  prefetch(request: ChunkRequest): boolean {
    const hex = request.digestHex;
    if (this.#closed || this.#arena.has(hex) || this.#loads.has(hex)) return false;
    if (this.#spill?.spill.has(hex) === true) return false;
    if (this.#allocations.waiting > 0 || this.#blobs.urgentWaiting) return false;
    const pageCount = this.#arena.pagesFor(request.length);
    if (!this.#readahead.admit(hex, pageCount * this.#table.pageBytes)) return false;
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
   * True when {@link readSpilled} would read the chunk: it is in the spill file and not in
   * memory. Lets a reader skip taking a buffer for a spill read that cannot happen.
   */
  isSpilled(digestHex: string, length: number): boolean {
    const spill = this.#spill?.spill;
    if (spill === undefined || this.#closed || this.#arena.has(digestHex)) return false;
    return spill.lengthOf(digestHex) === length;
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
    const hints: FetchHints = { urgent: false, blobMemory: this.#blobMemory(request.length) };
    try {
      const result = await this.#withDiscardRetry(request, async () => {
        const blob = await request.source.fetchChunk(
          hex,
          signal === undefined ? this.#closing.signal : AbortSignal.any([this.#closing.signal, signal]),
          hints,
        );
        if (this.#closed) throw closedError();
        if (aborted()) throw abortError(signal);
        return this.#decodes.decodeToFile(
          hints,
          { ...blobTask(request, blob), file },
          request.source.blobsAreTransferable === true,
        );
      });
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
      memoryWaits: this.#allocations.waits,
      evictions: this.#arena.evictions,
      spill: this.#spill?.spill.stats(),
      inFlight: this.#loads.size,
      cachedChunks: this.#arena.readyCount,
      lentBytes: this.#lent.bytes,
      usedBytes: this.#arena.capacityBytes - this.#arena.freeBytes,
      capacityBytes: this.capacityBytes,
      blobBytes: this.#blobs.heldBytes,
      peakBlobBytes: this.#blobs.peakBytes,
      blobBudgetBytes: this.#blobs.capacityBytes,
      blobMemoryReused: this.#blobPool.reused,
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
    this.#allocations.close(closedError);
    this.#blobs.close(closedError);
    this.#decodes.rejectQueued(closedError());
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
    this.#lent.checkInvariants((slot) => this.#table.pins(slot));
  }

  #newLoad(request: ChunkRequest, urgent: boolean): ChunkLoad {
    const load = new ChunkLoad(request.length, urgent, this.#blobMemory(request.length));
    this.#loads.set(request.digestHex, load);
    return load;
  }

  async #runLoad(request: ChunkRequest, load: ChunkLoad, preallocated: SlotIndex | undefined): Promise<void> {
    const hex = request.digestHex;
    let slot: SlotIndex | undefined = preallocated;
    try {
      const pageCount = this.#arena.pagesFor(request.length);
      if (pageCount > this.#table.pageCount) {
        throw new ReaderError(
          'ERR_LR_CHUNK_TOO_LARGE_FOR_CACHE',
          `chunk ${hex} needs ${request.length} bytes but the cache holds only ${this.capacityBytes}`,
        );
      }
      slot ??= await this.#allocations.allocate(pageCount, load, closedError);
      load.timeline.pages();
      this.#awaitingBlob.add(load);
      this.#table.setField(slot, kLengthField, request.length);
      if (this.#spill !== undefined && (await this.#spill.readBack(hex, request.length, slot))) {
        this.#awaitingBlob.delete(load);
        load.timeline.blob(true);
      } else await this.#fetchAndDecode(request, load, slot);
      this.#onLoad?.(load.timeline.record(hex, request.length, load.urgentAtStart, load.urgent, true));
      this.#ready(hex, slot, load);
    } catch (err) {
      this.#onLoad?.(load.timeline.record(hex, request.length, load.urgentAtStart, load.urgent, false));
      this.#awaitingBlob.delete(load);
      this.#loads.delete(hex);
      this.#readahead.markRead(hex);
      if (slot !== undefined) this.#arena.free(slot);
      this.#stats.failures++;
      // A load cut short by close() fails because of the close, whatever broke first.
      const reason = this.#closed ? closedError() : err;
      load.reject(reason);
    }
    // A load that ended may have left an unpinned slot (no waiters) or freed pages; then
    // decodes held for its fetch may start, unless a load that got memory now is urgent.
    this.#allocations.pump();
    this.#decodes.pump();
  }

  /**
   * Fetches the chunk's blob from its source and decodes it into the loading slot. A blob
   * that fails verification is offered to the source to drop (a persistent cache's damaged
   * copy, see ChunkSource.discardBlob); when it did, the chunk is fetched once more.
   */
  async #fetchAndDecode(request: ChunkRequest, load: ChunkLoad, slot: SlotIndex): Promise<void> {
    const result = await this.#withDiscardRetry(
      request,
      () => this.#fetchAndDecodeOnce(request, load, slot),
      () => this.#awaitingBlob.add(load),
    );
    if (!result.ok) throw fromErrorRecord(result.error);
    this.#stats.bytesDecoded += request.length;
  }

  /**
   * Runs `attempt` (one fetch and decode of a chunk). When the blob fails verification and
   * the source drops its copy of it (a persistent cache's damaged entry, see
   * ChunkSource.discardBlob), runs it once more, from the origin; a bad blob from the origin
   * itself is offered to the source again, so that it does not keep it.
   */
  async #withDiscardRetry<R extends { ok: boolean }>(
    request: ChunkRequest,
    attempt: () => Promise<R>,
    beforeRetry: () => void = () => {},
  ): Promise<R> {
    const { source, digestHex } = request;
    let result = await attempt();
    if (!result.ok && source.discardBlob !== undefined && (await source.discardBlob(digestHex))) {
      if (this.#closed) throw closedError();
      this.#stats.discardedBlobs++;
      beforeRetry();
      result = await attempt();
      if (!result.ok) await source.discardBlob(digestHex);
    }
    return result;
  }

  /** Memory for the blob of a chunk of `length` bytes, from the pool (FetchHints.blobMemory). */
  #blobMemory(length: number): BodyMemory {
    const charge = blobChargeBytes(length);
    return (bytes) => this.#blobPool.take(bytes, charge);
  }

  /**
   * One fetch and decode into the loading slot, its blob's bytes reserved from the blob
   * budget before the fetch (the load has its pages already: see BlobBudget on deadlock)
   * and given back once the decode has finished or the fetch failed.
   */
  async #fetchAndDecodeOnce(request: ChunkRequest, load: ChunkLoad, slot: SlotIndex): Promise<DecodeResult> {
    const hex = request.digestHex;
    const pages = this.#arena.pages(slot);
    const arriving = this.#arrivingBlob(request, load, pages);
    let releaseBlob: (() => void) | undefined;
    try {
      let blob: Uint8Array | undefined;
      try {
        releaseBlob = await this.#blobs.reserve(blobChargeBytes(request.length), load, closedError);
        load.timeline.memory(); // its memory: cache pages, then blob bytes
        blob = await request.source.fetchChunk(hex, this.#closing.signal, arriving?.hints ?? load);
        load.timeline.blob();
      } finally {
        // A blob that came is queued (urgent first) before anything held for it is started;
        // after a failed fetch, held decodes are looked at once the load has ended (#runLoad).
        this.#awaitingBlob.delete(load);
        // A decode that read the blob as it arrived stops once the fetch failed (never
        // reading memory a later fetch writes) or answers once the blob is whole.
        if (blob === undefined && arriving !== undefined) await arriving.settle(undefined);
      }
      const decodedArriving = arriving === undefined ? undefined : await arriving.settle(blob);
      // Checked after the last wait and right before the decode is queued: close() waits
      // for the decodes on a thread, so one started after it looked would outlive the pool.
      if (this.#closed) throw closedError();
      const result =
        decodedArriving ??
        (await this.#decodes.decode(
          load,
          { ...blobTask(request, blob), pages },
          request.source.blobsAreTransferable === true,
        ));
      load.timeline.decodeEnded();
      return result;
    } finally {
      arriving?.release(this.#decoder.threads);
      releaseBlob?.();
    }
  }

  /**
   * The fetch of an urgent load offered to decode as its blob arrives (arriving-blob.ts),
   * when the cache is told to (decodeAsArriving) and a thread can: a decoder that does it,
   * a source whose blobs arrive over time, an unencrypted chunk, pages in one run.
   * Whether it does is decided when the answer's head comes: a thread idle then, and no
   * other urgent load's blob on its way (in a burst of misses the cores are the limit,
   * and a decode fed per arrival costs more CPU).
   */
  #arrivingBlob(request: ChunkRequest, load: ChunkLoad, pages: Int32Array): ArrivingBlob | undefined {
    if (!this.#decodeAsArriving || this.#decoder.decodeArriving === undefined) return undefined;
    if (request.source.blobsArrive !== true) return undefined;
    if (!load.urgent || request.key !== undefined) return undefined;
    if (this.#table.loadingView(pages, request.length) === undefined) return undefined;
    return new ArrivingBlob(load, blobChargeBytes(request.length), this.#sharedBlobs, (blob, progress) =>
      this.#otherUrgentFetching(load)
        ? undefined
        : this.#decodes.decodeArriving(load, { ...blobTask(request, blob), pages, progress }),
    );
  }

  /** Another urgent load's blob is on its way: a burst of misses, where the cores are the limit. */
  #otherUrgentFetching(load: ChunkLoad): boolean {
    for (const other of this.#awaitingBlob) if (other !== load && other.urgent) return true;
    return false;
  }

  /** A loaded slot becomes a cached chunk: every waiter gets a pinned lease. */
  #ready(hex: string, slot: SlotIndex, load: ChunkLoad): void {
    if (this.#closed) throw closedError();
    this.#arena.markReady(hex, slot);
    this.#loads.delete(hex);
    load.resolve(() => {
      this.#table.pin(slot);
      return this.#arena.leaseOf(slot);
    });
    this.#spill?.writeAhead();
  }

  /**
   * An urgent blob is on its way: background decodes wait for it. Not an urgent load still
   * waiting for blob bytes: those come back only as decodes finish (no deadlock).
   */
  #urgentFetching(): boolean {
    for (const load of this.#awaitingBlob) if (load.urgent && !this.#blobs.isWaiting(load)) return true;
    return false;
  }
}

/** What every decode task of `request` holds: its blob, its digest, its length, its key. */
function blobTask(request: ChunkRequest, blob: Uint8Array): ChunkBlobTask {
  return {
    blob,
    digestHex: request.digestHex,
    length: request.length,
    ...(request.key === undefined ? {} : { key: request.key }),
  };
}

/** The cache's shared memory and its slot table, for the reader's own modules and tests. */
export interface ChunkCacheInternals {
  readonly table: SlotTable;
  readonly memory: SharedCacheMemory;
  /** Decodes waiting (`queued`) and on a thread (`running`): what tests wait for instead of sleeping. */
  readonly decodes: { readonly queued: number; readonly running: number };
}

/**
 * The slot table and shared memory behind a cache: what readers in this package copy from
 * and hand to other threads, and what tests walk to count pins. Exported only through
 * `@liverestore/reader/internal`: writing to the table bypasses every invariant.
 */
export function chunkCacheInternals(cache: ChunkCache): ChunkCacheInternals {
  return cacheInternals(cache);
}

function lengthMismatch(hex: string, actual: number, expected: number): LiverestoreError {
  return new LiverestoreError(
    'ERR_LR_CHUNK_LENGTH_MISMATCH',
    `chunk ${hex} holds ${actual} bytes, the index expects ${expected}`,
  );
}

function closedError(): ReaderError {
  return new ReaderError('ERR_LR_CACHE_CLOSED', 'the chunk cache is closed');
}
