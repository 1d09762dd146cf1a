/*
 * The reference model of ChunkCache used by cache-model.test.ts: a byte-budgeted LRU
 * with pins, FIFO memory waits and in-flight dedup, written as plainly as possible
 * (an array in LRU order, a count of free pages, a queue), with none of the real cache's
 * shared memory, slots or promises.
 */

/** Page size of the model tests. */
export const PAGE = 4096;

export type Outcome =
  | { readonly state: 'pending' }
  | { readonly state: 'fulfilled' }
  | { readonly state: 'rejected'; readonly error?: unknown; readonly code?: string };

// ---------------------------------------------------------------- the reference model

export interface ModelReady {
  readonly k: number;
  readonly pages: number;
  pins: number;
}

export interface ModelLoad {
  readonly k: number;
  readonly pages: number;
  readonly waiters: number[];
  /** Waited for memory at some point (to count waits that later completed). */
  waitedForMemory: boolean;
  /** An acquire waits for it (prefetches are background until one joins). */
  urgent: boolean;
}

export interface ModelFetch {
  readonly k: number;
  readonly mode: 'auto' | 'held';
  readonly fails: boolean;
}

/**
 * What the cache should do, written as plainly as possible: an array in LRU order, a
 * count of free pages, a FIFO of loads waiting for memory.
 */
export class CacheModel {
  free: number;
  /** Least recently used first. */
  readonly ready: ModelReady[] = [];
  readonly loads = new Map<number, ModelLoad>();
  readonly queue: ModelLoad[] = [];
  readonly fetches: ModelFetch[] = [];
  readonly outcomes = new Map<number, Outcome>();
  /** Acquires holding a lease (kept), in the order they got it; `lent` once lend() took it. */
  readonly held: { readonly id: number; readonly k: number; lent: boolean }[] = [];
  readonly #failNext = new Set<number>();
  readonly #delayNext = new Set<number>();
  readonly keeps = new Map<number, boolean>();
  /** Prefetched chunks (loading or ready) not asked for yet, with their pages: at most a quarter of the cache. */
  readonly unread = new Map<number, number>();
  completedAfterMemoryWait = 0;
  /** Requests for chunks larger than the cache (counted in neither misses nor failures). */
  tooLarge = 0;
  /** Background loads fetched while an urgent fetch was in flight: decoded once none is, in order. */
  readonly heldDecodes: ModelLoad[] = [];
  /**
   * Pins of readers that copy and release at once, on chunks just decoded. The real
   * reader drops such a pin a few microtasks after its lease arrives: after the cache has
   * looked at its held decodes, and before anything else happens. So memory behind these
   * pins is free for waiting loads only after held decodes were looked at.
   */
  readonly #transientPins: ModelReady[] = [];
  readonly stats = {
    hits: 0,
    misses: 0,
    dedupJoins: 0,
    prefetches: 0,
    prefetchesUnused: 0,
    bytesDecoded: 0,
    evictions: 0,
    failures: 0,
    memoryWaits: 0,
  };

  constructor(
    readonly capacity: number,
    readonly lengths: readonly number[],
  ) {
    this.free = capacity;
  }

  pagesOf(k: number): number {
    return Math.max(1, Math.ceil(this.lengths[k]! / PAGE));
  }

  isCached(k: number): boolean {
    return this.ready.some((r) => r.k === k);
  }

  failNext(k: number): void {
    this.#failNext.add(k);
  }

  delayNext(k: number): void {
    this.#delayNext.add(k);
  }

  acquire(id: number, k: number, keep: boolean): void {
    this.keeps.set(id, keep);
    const at = this.ready.findIndex((r) => r.k === k);
    if (at >= 0) {
      const entry = this.ready.splice(at, 1)[0]!;
      this.ready.push(entry);
      this.stats.hits++;
      this.unread.delete(k);
      this.#grant(id, entry);
      this.#pump();
      return;
    }
    const load = this.loads.get(k);
    if (load !== undefined) {
      this.stats.dedupJoins++;
      this.unread.delete(k);
      load.waiters.push(id);
      load.urgent = true;
      this.outcomes.set(id, { state: 'pending' });
      // A fetched background load held back for an urgent fetch is urgent now: decoded at once.
      const at = this.heldDecodes.indexOf(load);
      if (at >= 0) {
        this.heldDecodes.splice(at, 1);
        this.#decoded(load);
        this.#dropTransientPins(true);
      }
      return;
    }
    const pages = this.pagesOf(k);
    if (pages > this.capacity) {
      // Can never fit: the request fails at once with a clear code (it must not hang).
      // Whether that counts as a miss and a failure is the cache's choice: see compare().
      this.tooLarge++;
      this.outcomes.set(id, { state: 'rejected', code: 'ERR_LR_CHUNK_TOO_LARGE_FOR_CACHE' });
      return;
    }
    this.stats.misses++;
    const created: ModelLoad = { k, pages, waiters: [id], waitedForMemory: false, urgent: true };
    this.loads.set(k, created);
    this.outcomes.set(id, { state: 'pending' });
    if (this.queue.length === 0 && this.#tryAllocate(pages)) {
      this.#issueFetch(k);
    } else {
      created.waitedForMemory = true;
      this.stats.memoryWaits++;
      this.queue.push(created);
      this.#pump();
    }
  }

  prefetch(k: number): boolean {
    if (this.isCached(k) || this.loads.has(k) || this.queue.length > 0) return false;
    const pages = this.pagesOf(k);
    const unreadPages = [...this.unread.values()].reduce((a, b) => a + b, 0);
    if (unreadPages + pages > this.capacity * 0.25) return false;
    if (!this.#tryAllocate(pages)) return false;
    this.unread.set(k, pages);
    this.stats.prefetches++;
    this.loads.set(k, { k, pages, waiters: [], waitedForMemory: false, urgent: false });
    this.#issueFetch(k);
    return true;
  }

  /** Pages of the chunks lent leases hold, each chunk once. */
  lentPages(): number {
    const lent = new Set(this.held.filter((h) => h.lent).map((h) => h.k));
    return [...lent].reduce((sum, k) => sum + this.pagesOf(k), 0);
  }

  /**
   * Lends the held lease at `index`: always for a chunk already lent, else only if lent
   * chunks then hold at most half the cache. A lent lease is a pin like any other.
   */
  lend(index: number): boolean {
    const lease = this.held[index]!;
    const alreadyLent = this.held.some((h) => h.lent && h.k === lease.k);
    if (!alreadyLent && this.lentPages() + this.pagesOf(lease.k) > this.capacity * 0.5) return false;
    lease.lent = true;
    return true;
  }

  release(index: number): void {
    const [lease] = this.held.splice(index, 1);
    const entry = this.ready.find((r) => r.k === lease!.k)!;
    entry.pins--;
    this.#pump();
  }

  abort(id: number, reason: Error): void {
    for (const load of this.loads.values()) {
      const at = load.waiters.indexOf(id);
      if (at >= 0) load.waiters.splice(at, 1);
    }
    this.outcomes.set(id, { state: 'rejected', error: reason });
  }

  /**
   * The fetch at `index` of {@link fetches} ends: with `error`, or with the blob. A
   * background blob that arrives while an urgent fetch is in flight waits to be decoded
   * until none is; an urgent one is decoded at once, before any that waited.
   */
  completeFetch(index: number, error: Error | undefined): void {
    const [fetch] = this.fetches.splice(index, 1);
    const load = this.loads.get(fetch!.k)!;
    if (error !== undefined) {
      this.loads.delete(load.k);
      this.unread.delete(load.k);
      this.free += load.pages;
      this.stats.failures++;
      for (const id of load.waiters) this.outcomes.set(id, { state: 'rejected', error });
      this.#pump();
    } else if (!load.urgent && this.#urgentFetching()) {
      this.heldDecodes.push(load);
    } else {
      this.#decoded(load);
    }
    // One decode thread: held decodes start one at a time, each once the previous load
    // has ended and only while no urgent fetch is in flight. The readers of the load
    // before have released by the time the next one ends.
    while (this.heldDecodes.length > 0 && !this.#urgentFetching()) {
      const next = this.heldDecodes.shift()!;
      this.#dropTransientPins(false);
      this.#decoded(next);
    }
    this.#dropTransientPins(true);
  }

  /**
   * The readers that copy and release have done so (see #transientPins); with `pump`,
   * the memory they held serves waiting loads at once.
   */
  #dropTransientPins(pump: boolean): void {
    if (this.#transientPins.length === 0) return;
    for (const entry of this.#transientPins.splice(0)) entry.pins--;
    if (pump) this.#pump();
  }

  #urgentFetching(): boolean {
    return this.fetches.some((f) => this.loads.get(f.k)?.urgent === true);
  }

  /** A load's plaintext is in the cache: its waiters get leases. */
  #decoded(load: ModelLoad): void {
    this.loads.delete(load.k);
    this.stats.bytesDecoded += this.lengths[load.k]!;
    const entry: ModelReady = { k: load.k, pages: load.pages, pins: 0 };
    this.ready.push(entry);
    if (load.waitedForMemory) this.completedAfterMemoryWait += load.waiters.length;
    for (const id of load.waiters) {
      this.#grant(id, entry);
      if (this.keeps.get(id) !== true) {
        entry.pins++;
        this.#transientPins.push(entry);
      }
    }
    this.#pump();
  }

  /** A waiter gets a lease; one that does not keep it copies and releases at once. */
  #grant(id: number, entry: ModelReady): void {
    this.outcomes.set(id, { state: 'fulfilled' });
    if (this.keeps.get(id) === true) {
      entry.pins++;
      this.held.push({ id, k: entry.k, lent: false });
    }
  }

  #issueFetch(k: number): void {
    const fails = this.#failNext.delete(k);
    const held = this.#delayNext.delete(k);
    this.fetches.push({ k, mode: held ? 'held' : 'auto', fails });
  }

  /** Evicts least recently used unpinned chunks only if that makes enough room. */
  #tryAllocate(pages: number): boolean {
    if (this.free < pages) {
      let room = this.free;
      const victims: ModelReady[] = [];
      for (const entry of this.ready) {
        if (room >= pages) break;
        if (entry.pins > 0) continue;
        victims.push(entry);
        room += entry.pages;
      }
      if (room < pages) return false;
      for (const victim of victims) {
        this.ready.splice(this.ready.indexOf(victim), 1);
        if (this.unread.delete(victim.k)) this.stats.prefetchesUnused++;
      }
      this.stats.evictions += victims.length;
      this.free = room;
    }
    this.free -= pages;
    return true;
  }

  #pump(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (!this.#tryAllocate(head.pages)) return;
      this.queue.shift();
      this.#issueFetch(head.k);
    }
  }
}
