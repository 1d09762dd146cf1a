/*
 * The public API of @liverestore/server: exactly what docs/api.md documents (a test
 * checks the two agree). Internals are in ./internal.ts.
 */
export { ServerError } from './errors.js';
export { startChunkServer } from './server.js';
export {
  type ChunkServer,
  type ChunkServerOptions,
  DEFAULT_LISTEN,
  DEFAULT_MAX_CONCURRENT_REQUESTS,
  DEFAULT_MIN_BYTES_PER_SECOND,
  DEFAULT_MIN_RATE_WINDOW_MS,
} from './server-options.js';
