export * from './alloc-map.js';
export * from './copy-job.js';
export * from './errors.js';
export * from './live-drive.js';
export * from './live-restore.js';
export * from './region-state.js';
export * from './sched.js';
export * from './target-file.js';
