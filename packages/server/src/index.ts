export * from './archive-pool.js';
export * from './confined-store.js';
export * from './errors.js';
export * from './metrics.js';
export * from './range.js';
export * from './routes.js';
export * from './server.js';
