export * from './alloc-map.js';
export * from './copy-job.js';
export * from './errors.js';
export * from './live-drive.js';
export * from './live-restore.js';
export { RegionState, stateName } from './region-state.js';
export * from './sched.js';
export { realTargetFiles, type TargetFile, type TargetFiles } from './target-file.js';
