/**
 * Internals of @liverestore/live for the other packages, tests and tools of this
 * repository: the allocation map codec and files, the background copy job, the scheduling
 * pieces (TokenBucket, GuestPriority, RegionLocks, Semaphore, sleep, Clock) and the error
 * helpers. Not a stable API: it changes without notice. Modules are re-exported whole, so a
 * name of the main entry may appear here too (the same object).
 */
export * from './alloc-map.js';
export * from './backup-copies.js';
export * from './copy-job.js';
export * from './errors.js';
export * from './live-drive.js';
export * from './live-restore.js';
export { RegionState, stateName } from './region-state.js';
export { fillRuns } from './region-writer.js';
export * from './sched.js';
export * from './staged-direct.js';
export {
  diskTargetFiles,
  FileTarget,
  realTargetFiles,
  type TargetFile,
  type TargetFiles,
} from './target-file.js';
