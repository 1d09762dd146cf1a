/**
 * Internals of @liverestore/reader for the other packages, tests and tools of this
 * repository: the slot table and its fields, the cache's memory (chunkCacheInternals),
 * chunk access, error records, the HTTP transport and link scheduler (for other remote
 * sources), defaults and limits. Not a stable API: it changes without notice. Modules are
 * re-exported whole, so a name of the main entry may appear here too (the same object).
 */
export * from './blob-budget.js';
export * from './byte-views.js';
export * from './cached-chunk-reader.js';
export * from './chunk-access.js';
export * from './chunk-cache.js';
export * from './chunk-cache-options.js';
export * from './data-extents.js';
export * from './decoder.js';
export * from './direct-io.js';
export * from './errors.js';
export * from './http-body.js';
export * from './http-listing.js';
export * from './http-source.js';
export * from './http-transport.js';
export * from './link-scheduler.js';
export * from './persistent-cache-source.js';
export * from './persistent-chunk-cache.js';
export * from './read-lease.js';
export * from './readahead.js';
export * from './restore.js';
export * from './s3-source.js';
export * from './slot-table.js';
export * from './snapshot.js';
export * from './staged-writes.js';
export * from './tls-trust.js';
