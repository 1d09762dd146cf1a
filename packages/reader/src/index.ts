export * from './cached-chunk-reader.js';
export * from './chunk-access.js';
export * from './chunk-cache.js';
export * from './chunk-source.js';
export * from './errors.js';
export * from './readahead.js';
export * from './slot-table.js';
export * from './snapshot.js';
