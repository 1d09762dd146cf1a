export * from './s3-backup-target.js';
export * from './s3-client.js';
export * from './s3-datastore.js';
export * from './s3-error.js';
export * from './s3-settings.js';
