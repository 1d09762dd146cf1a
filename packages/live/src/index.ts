/*
 * The public API of @liverestore/live: exactly what docs/api.md documents (a test
 * checks the two agree). Internals are in ./internal.ts.
 */
export { LiveError } from './errors.js';
export { LiveDrive, type LiveDriveOptions, type LiveDriveStats } from './live-drive.js';
export {
  type DriveProgress,
  LiveRestore,
  type LiveRestoreOptions,
  type LiveRestoreProgress,
  type LiveRestoreSummary,
  liveRestore,
} from './live-restore.js';
export { RegionState, stateName } from './region-state.js';
export { realTargetFiles, type TargetFile, type TargetFiles } from './target-file.js';
