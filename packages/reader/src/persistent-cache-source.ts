import type { NamespaceScope, SnapshotRef, SnapshotSpec } from '@liverestore/datastore';
import type { ChunkSource, FetchHints } from './chunk-source.js';
import { PersistentChunkCache, type PersistentChunkCacheOptions } from './persistent-chunk-cache.js';

/**
 * A {@link ChunkSource} that keeps the blobs of another one in a {@link PersistentChunkCache}:
 * a chunk is read from the cache directory when it is there, else fetched from the origin
 * and stored (in the background) for the next time. Any source can be wrapped: an HTTP
 * server, an object store. Snapshot listings and files always come from the origin (they
 * can change; chunks cannot).
 *
 * A cached blob that fails verification is dropped through {@link discardBlob}, and the
 * chunk cache fetches it once more, from the origin this time.
 */
export class PersistentCacheSource implements ChunkSource {
  /** Blobs from the cache are fresh reads; of an origin's blob the caller gets one copy, the cache writes the other. */
  readonly blobsAreTransferable = true;
  /** The origin's, when it has one (a source without it knows only the root namespace). */
  readonly listNamespaces?: (scope?: NamespaceScope) => Promise<string[]>;
  readonly #closeCache: boolean;
  #closed: Promise<void> | undefined;

  /**
   * `closeCache`: close `cache` when this source closes (the origin is always closed with
   * it). Leave it false when several sources share one cache.
   */
  constructor(
    readonly origin: ChunkSource,
    readonly cache: PersistentChunkCache,
    options: { closeCache?: boolean } = {},
  ) {
    this.#closeCache = options.closeCache === true;
    const listNamespaces = origin.listNamespaces?.bind(origin);
    if (listNamespaces !== undefined) this.listNamespaces = listNamespaces;
  }

  /** Opens a cache with `options` and wraps `origin` in it; closing the source closes both. */
  static async open(
    origin: ChunkSource,
    options: PersistentChunkCacheOptions,
  ): Promise<PersistentCacheSource> {
    const cache = await PersistentChunkCache.open(options);
    return new PersistentCacheSource(origin, cache, { closeCache: true });
  }

  get name(): string {
    return this.origin.name;
  }

  async fetchChunk(digestHex: string, signal?: AbortSignal, hints?: FetchHints): Promise<Uint8Array> {
    const cached = await this.cache.read(digestHex, signal, hints?.blobMemory);
    if (cached !== undefined) return cached;
    const blob = await this.origin.fetchChunk(digestHex, signal, hints);
    // The caller may hand its blob to another thread while the cache writes the other one.
    // (A copy: `slice` of a Buffer would be a view of the same memory.)
    const copy = new Uint8Array(blob);
    if (this.origin.blobsAreTransferable === true) {
      this.cache.store(digestHex, copy);
      return blob;
    }
    this.cache.store(digestHex, blob);
    return copy;
  }

  async discardBlob(digestHex: string): Promise<boolean> {
    const dropped = await this.cache.discard(digestHex);
    const originDropped = (await this.origin.discardBlob?.(digestHex)) === true;
    return dropped || originDropped;
  }

  listSnapshots(scope?: NamespaceScope): Promise<SnapshotRef[]> {
    return this.origin.listSnapshots(scope);
  }

  resolveSnapshot(spec: SnapshotSpec): Promise<SnapshotRef> {
    return this.origin.resolveSnapshot(spec);
  }

  readSnapshotFile(ref: SnapshotRef, filename: string): Promise<Uint8Array> {
    return this.origin.readSnapshotFile(ref, filename);
  }

  /** Closes the origin and, when this source owns it, the cache (after its writes end). */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.origin.close?.();
      if (this.#closeCache) await this.cache.close();
    })();
    return this.#closed;
  }
}
