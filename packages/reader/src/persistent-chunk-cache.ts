import { constants } from 'node:fs';
import { mkdir, open, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileBuffer, isNoSpace } from '@liverestore/datastore/internal';
import { MAX_BLOB_BYTES } from '@liverestore/format';
import { BLOB_HEADER_BYTES, type BodyMemory } from '@liverestore/format/internal';
import {
  entryPath,
  isCacheableDigest,
  prepareCacheDir,
  scanCacheDir,
  tempEntryPath,
} from './chunk-cache-dir.js';

/** Default `capacityBytes` of a persistent chunk cache: 10 GiB. */
export const DEFAULT_PERSISTENT_CACHE_BYTES = 10 * 1024 * 1024 * 1024;
/** Default `touchIntervalMs`: an entry's mtime is refreshed at most this often (10 min). */
export const DEFAULT_TOUCH_INTERVAL_MS = 10 * 60 * 1000;

/** Options of {@link PersistentChunkCache.open}. */
export interface PersistentChunkCacheOptions {
  /** The cache directory: created when missing; an existing one must be empty or a chunk cache. */
  dir: string;
  /** Most bytes of blobs kept; least recently used ones are deleted beyond. Default 10 GiB. */
  capacityBytes?: number | undefined;
  /**
   * A hit refreshes the entry's mtime (its place in the LRU order after a restart) at most
   * this often: reads cost no write each. Default 10 min.
   */
  touchIntervalMs?: number | undefined;
  /** The clock, in ms since the epoch (tests inject one); default `Date.now`. */
  now?: (() => number) | undefined;
}

/** Counters of {@link PersistentChunkCache.stats}. */
export interface PersistentChunkCacheStats {
  /** Fetches answered from the directory. */
  hits: number;
  /** Fetches the directory could not answer (the origin was asked). */
  misses: number;
  /** Blobs written into the directory. */
  stored: number;
  /** Blobs deleted to stay within the capacity. */
  evictions: number;
  /** Entries dropped because they were damaged (short, or failed verification when decoded). */
  discarded: number;
  /** Writes that failed (the blob is simply not cached); after ENOSPC/EDQUOT the capacity shrinks. */
  writeFailures: number;
  /** Entries this process knows of now. */
  entries: number;
  /** Their bytes, with the writes in progress. */
  bytes: number;
  /** The capacity now (lower than configured after the disk was found full). */
  capacityBytes: number;
}

interface Entry {
  readonly bytes: number;
  /** When this process last set (or saw) the file's mtime. */
  touchedMs: number;
}

function checkPositiveInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
}

/**
 * A directory of raw chunk blobs that outlives the process: a second restore of the same
 * snapshot reads them here instead of from a remote source. Wrap a source with
 * {@link PersistentCacheSource} to use it.
 *
 * - Blobs are written to a temp file and renamed into place, so no half blob is ever
 *   visible; not fsynced (a cache): a blob damaged by a power loss fails verification
 *   when decoded and is dropped ({@link discard}) and fetched again.
 * - Byte-bounded LRU: the order is in memory (rebuilt at start from the files' mtimes,
 *   refreshed on hits at most every `touchIntervalMs`); writes reserve their bytes
 *   before they start, deleting the least recently used entries first.
 * - Several processes may share the directory: temp names carry the pid, renames are
 *   atomic, and every file operation tolerates an entry another process deleted. Each
 *   process bounds the entries it knows of (found at start, read or written since).
 * - A full disk (ENOSPC/EDQUOT) lowers the capacity to what the cache holds then: it goes
 *   on within the space it has, and stores nothing when that is none. Failures to store
 *   never fail a fetch.
 */
export class PersistentChunkCache {
  readonly dir: string;
  readonly #touchIntervalMs: number;
  readonly #now: () => number;
  /** Known entries, least recently used first (Map order). */
  readonly #entries = new Map<string, Entry>();
  /** Writes in progress, by digest. */
  readonly #writes = new Map<string, Promise<void>>();
  /** Deletions and touches in progress (awaited by close). */
  readonly #chores = new Set<Promise<unknown>>();
  readonly #madeDirs = new Set<string>();
  #capacityBytes: number;
  /** Bytes of known entries plus those of writes in progress. */
  #bytes = 0;
  #closed = false;
  readonly #stats = { hits: 0, misses: 0, stored: 0, evictions: 0, discarded: 0, writeFailures: 0 };

  private constructor(dir: string, capacityBytes: number, touchIntervalMs: number, now: () => number) {
    this.dir = dir;
    this.#capacityBytes = capacityBytes;
    this.#touchIntervalMs = touchIntervalMs;
    this.#now = now;
  }

  /** Opens (or makes) the cache in `options.dir` and rebuilds its LRU order from the files there. */
  static async open(options: PersistentChunkCacheOptions): Promise<PersistentChunkCache> {
    if (typeof options.dir !== 'string' || options.dir === '')
      throw new TypeError('dir must be a non-empty string');
    const capacityBytes = options.capacityBytes ?? DEFAULT_PERSISTENT_CACHE_BYTES;
    checkPositiveInteger(capacityBytes, 'capacityBytes');
    const touchIntervalMs = options.touchIntervalMs ?? DEFAULT_TOUCH_INTERVAL_MS;
    if (!Number.isSafeInteger(touchIntervalMs) || touchIntervalMs < 0)
      throw new RangeError('touchIntervalMs must be a non-negative integer');
    const now = options.now ?? Date.now;
    await prepareCacheDir(options.dir);
    const cache = new PersistentChunkCache(options.dir, capacityBytes, touchIntervalMs, now);
    const found = await scanCacheDir(options.dir, now());
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const entry of found) cache.#add(entry.digestHex, entry.bytes, entry.mtimeMs);
    cache.#evictDownTo(cache.#capacityBytes);
    return cache;
  }

  /**
   * The cached blob of a chunk, or undefined (a miss: not here, deleted meanwhile, or too
   * short to be a blob, which is then dropped). Never throws but for `signal`. Read into
   * `memory` when given (an array of exactly the entry's size: a chunk cache's blob memory).
   */
  async read(digestHex: string, signal?: AbortSignal, memory?: BodyMemory): Promise<Uint8Array | undefined> {
    if (this.#closed || !isCacheableDigest(digestHex)) return undefined;
    const path = entryPath(this.dir, digestHex);
    let blob: Buffer;
    let mtimeMs: number;
    try {
      // Never follow a link or wait on a FIFO that took an entry's name.
      const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        const stat = await handle.stat();
        if (!stat.isFile()) throw new Error(`${path} is not a regular file`);
        mtimeMs = stat.mtimeMs;
        if (stat.size < BLOB_HEADER_BYTES || stat.size > MAX_BLOB_BYTES) blob = Buffer.alloc(0);
        else {
          blob = fileBuffer(stat.size, memory);
          const { bytesRead } = await handle.read(blob, 0, stat.size, 0);
          if (bytesRead !== stat.size) blob = blob.subarray(0, bytesRead);
        }
      } finally {
        await handle.close();
      }
    } catch {
      // ENOENT (never stored, or deleted by another process) and any other read failure.
      signal?.throwIfAborted();
      this.#forget(digestHex);
      this.#stats.misses++;
      return undefined;
    }
    signal?.throwIfAborted();
    if (blob.length < BLOB_HEADER_BYTES) {
      await this.discard(digestHex);
      this.#stats.misses++;
      return undefined;
    }
    this.#stats.hits++;
    this.#used(digestHex, blob.length, mtimeMs);
    return blob;
  }

  /**
   * Starts writing `blob` (not awaited: a fetch never waits for it; {@link close} does). The
   * caller must not change `blob` afterwards. Skipped when the chunk is known or being
   * written, or when it does not fit.
   */
  store(digestHex: string, blob: Uint8Array): void {
    if (this.#closed || !isCacheableDigest(digestHex) || blob.length < BLOB_HEADER_BYTES) return;
    if (this.#entries.has(digestHex) || this.#writes.has(digestHex)) return;
    if (blob.length > this.#capacityBytes) return;
    this.#evictDownTo(this.#capacityBytes - blob.length);
    this.#bytes += blob.length;
    const write = this.#write(digestHex, blob).finally(() => this.#writes.delete(digestHex));
    this.#writes.set(digestHex, write);
  }

  /**
   * Drops a chunk's entry (a blob that failed verification): waits for a write of it in
   * progress, then deletes the file, so the next read misses. True when there was an
   * entry (or a write) to drop.
   */
  async discard(digestHex: string): Promise<boolean> {
    if (!isCacheableDigest(digestHex)) return false;
    const writing = this.#writes.get(digestHex);
    if (writing !== undefined) await writing;
    const known = this.#forget(digestHex) || writing !== undefined;
    let removed = false;
    try {
      await rm(entryPath(this.dir, digestHex));
      removed = true;
    } catch {
      // Not there (ENOENT): another process dropped or evicted it.
    }
    if (known || removed) this.#stats.discarded++;
    return known || removed;
  }

  stats(): PersistentChunkCacheStats {
    return {
      ...this.#stats,
      entries: this.#entries.size,
      bytes: this.#bytes,
      capacityBytes: this.#capacityBytes,
    };
  }

  /** Throws when the byte count does not match the entries and writes it records (for tests). */
  checkInvariants(): void {
    let bytes = 0;
    for (const entry of this.#entries.values()) bytes += entry.bytes;
    if (this.#writes.size === 0 && bytes !== this.#bytes)
      throw new Error(`entries hold ${bytes} bytes, the count says ${this.#bytes}`);
    if (bytes > this.#bytes)
      throw new Error(`entries hold ${bytes} bytes, more than the count ${this.#bytes}`);
    if (this.#writes.size === 0 && this.#bytes > this.#capacityBytes)
      throw new Error(`${this.#bytes} bytes cached, capacity ${this.#capacityBytes}`);
  }

  /** Resolves once no write, deletion or touch is in progress (those started meanwhile too). */
  async idle(): Promise<void> {
    while (this.#writes.size > 0 || this.#chores.size > 0)
      await Promise.all([...this.#writes.values(), ...this.#chores]);
  }

  /** Stops storing; waits for writes, deletions and touches in progress. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.idle();
  }

  async #write(digestHex: string, blob: Uint8Array): Promise<void> {
    const path = entryPath(this.dir, digestHex);
    const temp = tempEntryPath(this.dir, digestHex);
    try {
      const parent = dirname(path);
      if (!this.#madeDirs.has(parent)) {
        await mkdir(parent, { recursive: true });
        this.#madeDirs.add(parent);
      }
      await writeFile(temp, blob, { flag: 'wx' });
      await rename(temp, path);
    } catch (err) {
      await rm(temp, { force: true }).catch(() => undefined);
      this.#bytes -= blob.length;
      this.#stats.writeFailures++;
      // The disk holds what the cache has now and no more: stay within that.
      if (isNoSpace(err)) this.#capacityBytes = Math.min(this.#capacityBytes, this.#bytes);
      return;
    }
    this.#stats.stored++;
    this.#bytes -= blob.length;
    this.#add(digestHex, blob.length, this.#now());
    this.#evictDownTo(this.#capacityBytes);
  }

  /** Records an entry as most recently used (replacing what was known of it). */
  #add(digestHex: string, bytes: number, touchedMs: number): void {
    this.#forget(digestHex);
    this.#entries.set(digestHex, { bytes, touchedMs });
    this.#bytes += bytes;
  }

  /** Forgets an entry (the file is not touched); true when it was known. */
  #forget(digestHex: string): boolean {
    const entry = this.#entries.get(digestHex);
    if (entry === undefined) return false;
    this.#entries.delete(digestHex);
    this.#bytes -= entry.bytes;
    return true;
  }

  /** A hit: most recently used now; the file's mtime follows when it is older than the touch interval. */
  #used(digestHex: string, bytes: number, mtimeMs: number): void {
    const known = this.#entries.get(digestHex);
    const touchedMs = Math.max(known?.touchedMs ?? mtimeMs, mtimeMs);
    this.#add(digestHex, bytes, touchedMs);
    // An entry another process wrote is new to this one: it may push the total over.
    this.#evictDownTo(this.#capacityBytes);
    const now = this.#now();
    const entry = this.#entries.get(digestHex);
    if (entry === undefined || now - touchedMs < this.#touchIntervalMs) return;
    entry.touchedMs = now;
    this.#chore(utimes(entryPath(this.dir, digestHex), now / 1000, now / 1000));
  }

  /** Deletes least recently used entries until the cache holds at most `bytes`. */
  #evictDownTo(bytes: number): void {
    for (const [digestHex] of this.#entries) {
      if (this.#bytes <= bytes) return;
      this.#forget(digestHex);
      this.#stats.evictions++;
      this.#chore(rm(entryPath(this.dir, digestHex), { force: true }));
    }
  }

  /** Runs a file operation in the background; its failure (an entry gone meanwhile) does not matter. */
  #chore(operation: Promise<unknown>): void {
    const chore = operation.catch(() => undefined).finally(() => this.#chores.delete(chore));
    this.#chores.add(chore);
  }
}
