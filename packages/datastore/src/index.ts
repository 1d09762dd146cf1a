export * from './archive-name.js';
export * from './atomic-write.js';
export * from './backup-writer.js';
export * from './datastore.js';
export * from './errors.js';
export * from './image-source.js';
export * from './snapshot-ref.js';
export * from './verify.js';
