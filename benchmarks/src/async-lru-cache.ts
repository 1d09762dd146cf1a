/**
 * The cache of "C" (PBS today, pbs-today-reader.ts), modelled on PBS's
 * `pbs-tools/src/async_lru_cache.rs` over `pbs-tools/src/lru_cache.rs`: an LRU bounded by
 * its number of entries (not bytes), plus a map of in-flight loads (PBS: `BroadcastFuture`
 * from proxmox-async) so that concurrent requests for one key share one load. It knows
 * nothing of chunks. Semantics kept from PBS:
 *
 * - `access` looks at the in-flight map first, then the LRU; a hit moves the entry to the
 *   most-recent end;
 * - a load's value enters the LRU only when it succeeds; the entry that pushes the LRU
 *   over its capacity evicts the least recently used one. Loads in flight are not
 *   counted against the capacity (their memory is extra, as in PBS);
 * - a failed load is not cached and every waiter of it gets its error; the next access
 *   loads again.
 *
 * A JavaScript Map keeps insertion order, so delete + set is "bring to front" and the
 * first key is the least recently used.
 */

/** Counters of one AsyncLruCache. */
export interface AsyncLruCacheStats {
  /** Accesses answered from the LRU. */
  hits: number;
  /** Accesses that joined a load already in flight. */
  joins: number;
  /** Accesses that started a load. */
  loads: number;
  /** Entries dropped to stay within the capacity. */
  evictions: number;
}

/** An LRU of at most `capacity` values with shared in-flight loads (PBS's AsyncLruCache). */
export class AsyncLruCache<K, V> {
  readonly stats: AsyncLruCacheStats = { hits: 0, joins: 0, loads: 0, evictions: 0 };
  readonly #lru = new Map<K, V>();
  readonly #inFlight = new Map<K, Promise<V>>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('capacity must be a positive integer');
  }

  /** Values held now (loads in flight excluded). */
  get size(): number {
    return this.#lru.size;
  }

  /** Loads in flight now. */
  get loading(): number {
    return this.#inFlight.size;
  }

  /** Whether `key` is cached now (without touching its recency). */
  has(key: K): boolean {
    return this.#lru.has(key);
  }

  /** The value of `key`: cached, the result of a load in flight, or of `load()` started now. */
  access(key: K, load: () => Promise<V>): Promise<V> {
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) {
      this.stats.joins++;
      return pending;
    }
    if (this.#lru.has(key)) {
      const value = this.#lru.get(key) as V;
      this.#lru.delete(key);
      this.#lru.set(key, value);
      this.stats.hits++;
      return Promise.resolve(value);
    }
    this.stats.loads++;
    // The executor runs load() now; a synchronous throw becomes a rejection for all.
    const loading = new Promise<V>((resolve) => resolve(load()));
    this.#inFlight.set(key, loading);
    loading.then(
      (value) => {
        this.#inFlight.delete(key);
        this.#insert(key, value);
      },
      () => {
        this.#inFlight.delete(key);
      },
    );
    return loading;
  }

  #insert(key: K, value: V): void {
    this.#lru.delete(key);
    this.#lru.set(key, value);
    if (this.#lru.size > this.capacity) {
      const oldest = this.#lru.keys().next().value as K;
      this.#lru.delete(oldest);
      this.stats.evictions++;
    }
  }
}
