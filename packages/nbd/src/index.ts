export * from './client.js';
export * from './errors.js';
export * from './export.js';
export * from './protocol.js';
export * from './server.js';
