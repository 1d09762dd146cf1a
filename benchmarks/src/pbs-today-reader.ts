/**
 * "C" of `bench live-restore`: PBS's read path today (after the 2021 rewrite, "Improve
 * live-restore speed and replace AsyncIndexReader"), rebuilt here (not in the product)
 * as the honest anchor for B. Modelled on, as read in their current sources:
 *
 * - proxmox-backup-qemu `src/shared_cache.rs`: one `AsyncLruCache` of decoded chunks,
 *   keyed by digest, created once and shared by every drive of the restore, capacity
 *   `SHARED_CACHE_CAPACITY = 64` entries ("256 MB" at 4 MiB chunks), counted in entries,
 *   not bytes;
 * - proxmox-backup-qemu `src/restore.rs` (`open_image`, `read_image_at`): per drive a
 *   `RemoteChunkReader` with the `find_most_used_chunks(8)` cache hint under a
 *   `CachedChunkReader::new_with_cache(…, shared cache)`; `read_image_at` calls
 *   `reader.read_at` directly, with no per-drive mutex, so reads of a drive (the copy job
 *   and the guest's) overlap;
 * - proxmox-backup `pbs-datastore/src/cached_chunk_reader.rs` (`CachedChunkReader::read_at`):
 *   a loop over the chunks of the range, each `cache.access(digest, …).await`ed before
 *   the next, so the chunks of one read are fetched one after another; no readahead;
 * - proxmox-backup `pbs-tools/src/async_lru_cache.rs` (+ proxmox-async's
 *   `BroadcastFuture`): concurrent readers of one chunk share one fetch + decode, a
 *   failed load is not cached (async-lru-cache.ts);
 * - proxmox-backup `pbs-client/src/remote_chunk_reader.rs` (`AsyncReadChunk::read_chunk`):
 *   fetch, then decode inline on the reading task: CRC-32, inflate, SHA-256 check, with
 *   @liverestore/format's decodeChunk (remote-chunk-reader.ts, shared with A).
 *
 * Fetches go through the product's HTTP client to the same `liverestore serve`, through
 * the same proxy, as A and B. By default every decode runs on the one event-loop thread,
 * as in A. PBS differs there: its `BroadcastFuture` (proxmox-async `broadcast_future.rs`)
 * `tokio::spawn`s each load on a multi-threaded runtime of up to 4 worker threads
 * (`MAX_WORKER_THREADS`, `PBS_RESTORE_MAX_THREADS`), so loads of different chunks decode
 * on different cores; a `decoder` (pbs-decode-worker.ts, `--pbs-decode-threads N`) models
 * that. PBS's client speaks HTTP/2 to its server; C uses the product's HTTP/1.1 client
 * like A and B.
 */

import { resolveArchiveName, type SnapshotRef } from '@liverestore/datastore';
import { type ChunkIndex, readIndex } from '@liverestore/format';
import type { ChunkSource } from '@liverestore/reader';
import { AsyncLruCache } from './async-lru-cache.js';
import { type ChunkDecoder, RemoteChunkReader, readChunkByChunk } from './remote-chunk-reader.js';

/** Entries of the shared cache: proxmox-backup-qemu's `SHARED_CACHE_CAPACITY`. */
export const PBS_SHARED_CACHE_CHUNKS = 64;

/** PBS's shared chunk cache: decoded chunks by digest (hex), counted in entries. */
export type SharedChunkCache = AsyncLruCache<string, Uint8Array>;

/** A cache like the one proxmox-backup-qemu shares between all drives of a restore. */
export function sharedChunkCache(capacity = PBS_SHARED_CACHE_CHUNKS): SharedChunkCache {
  return new AsyncLruCache<string, Uint8Array>(capacity);
}

/** One drive read the way PBS reads it today (CachedChunkReader over RemoteChunkReader). */
export class PbsTodayDriveReader {
  readonly size: number;
  readonly chunks: RemoteChunkReader;

  constructor(
    readonly name: string,
    readonly index: ChunkIndex,
    source: ChunkSource,
    readonly cache: SharedChunkCache,
    decoder?: ChunkDecoder,
  ) {
    this.size = index.sizeBytes;
    this.chunks = new RemoteChunkReader(source, index, decoder);
  }

  /** Opens archive `archive` of snapshot `ref` of `source` on the shared `cache`. */
  static async open(
    source: ChunkSource,
    ref: SnapshotRef,
    archive: string,
    cache: SharedChunkCache,
    decoder?: ChunkDecoder,
  ): Promise<PbsTodayDriveReader> {
    const name = resolveArchiveName(archive);
    const index = readIndex(await source.readSnapshotFile(ref, name.filename));
    return new PbsTodayDriveReader(name.name, index, source, cache, decoder);
  }

  /** Fills `buffer` from `offset` (the range must lie within the image); no lock held. */
  read(buffer: Uint8Array, offset: number): Promise<void> {
    return readChunkByChunk(this.index, buffer, offset, (i) =>
      this.cache.access(this.chunks.digestHex(i), () => this.chunks.readChunk(i)),
    );
  }
}
