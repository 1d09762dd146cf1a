/*
 * The public API of @liverestore/reader: exactly what docs/api.md documents (a test
 * checks the two agree). Internals are in ./internal.ts.
 */
export { type ArchiveReaderOptions, CachedChunkReader } from './cached-chunk-reader.js';
export { ChunkCache } from './chunk-cache.js';
export {
  type ChunkCacheOptions,
  type ChunkCacheStats,
  type ChunkRequest,
  DEFAULT_CACHE_BYTES,
} from './chunk-cache-options.js';
export { type ChunkSource, type FetchHints, LocalChunkSource } from './chunk-source.js';
export { ReaderError } from './errors.js';
export { HttpChunkSource, type HttpChunkSourceOptions, isSourceUrl } from './http-source.js';
export type { RetryEvent } from './http-transport.js';
export type { ChunkLoadRecord } from './load-record.js';
export { PersistentCacheSource } from './persistent-cache-source.js';
export {
  DEFAULT_PERSISTENT_CACHE_BYTES,
  DEFAULT_TOUCH_INTERVAL_MS,
  PersistentChunkCache,
  type PersistentChunkCacheOptions,
  type PersistentChunkCacheStats,
} from './persistent-chunk-cache.js';
export type { ReadLease, ScratchBuffers } from './read-lease.js';
export { exportArchive, openRemoteArchive, type RemoteArchiveHandle } from './remote.js';
export {
  RESTORE_SYNC_EVERY_BYTES,
  type RestoreOptions,
  type RestoreProgress,
  type RestoreResult,
  restoreArchive,
  Writeback,
} from './restore.js';
export { S3ChunkSource, type S3ChunkSourceOptions } from './s3-source.js';
export { DEFAULT_PAGE_BYTES, type Lease } from './slot-table.js';
export { type OpenSnapshotOptions, openChunkSource, openSnapshot, Snapshot } from './snapshot.js';
export { DEFAULT_SPILL_BYTES, type SpillStats, SpillStore, type SpillStoreOptions } from './spill-store.js';
export { normalizeFingerprint, type TlsTrust } from './tls-trust.js';
