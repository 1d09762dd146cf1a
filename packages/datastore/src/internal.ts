/**
 * Internals of @liverestore/datastore for the other packages, tests and tools of this
 * repository: atomic writes and temp-file tracking, the worker-pool entry, store file
 * opening, snapshot file readers, namespace and archive-name helpers. Not a stable API:
 * it changes without notice. Modules are re-exported whole, so a name of the main entry
 * may appear here too (the same object).
 */
export * from './archive-name.js';
export * from './atomic-write.js';
export * from './backup-target.js';
export * from './datastore.js';
export * from './esm-worker-pool.js';
export * from './group-owner.js';
export * from './image-source.js';
export * from './namespace.js';
export * from './no-space.js';
export * from './regular-file.js';
export * from './s3/index.js';
export * from './snapshot-extras.js';
export * from './snapshot-files.js';
export * from './snapshot-pick.js';
export * from './snapshot-ref.js';
export * from './temp-files.js';
export * from './verify-state.js';
