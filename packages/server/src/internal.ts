/**
 * Internals of @liverestore/server for the other packages, tests and tools of this
 * repository: the archive pool, the confined store, Range parsing, routing, metrics, the
 * error mapping and the server's timeouts and piece sizes. Not a stable API: it changes
 * without notice. Modules are re-exported whole, so a name of the main entry may appear
 * here too (the same object).
 */
export * from './archive-pool.js';
export * from './confined-store.js';
export * from './errors.js';
export * from './metrics.js';
export * from './range.js';
export * from './routes.js';
export * from './server.js';
export {
  type ChunkServer,
  type ChunkServerOptions,
  CLOSE_GRACE_MS,
  DEFAULT_LISTEN,
  DEFAULT_MAX_CONCURRENT_REQUESTS,
  DEFAULT_MIN_BYTES_PER_SECOND,
  DEFAULT_MIN_RATE_WINDOW_MS,
  FILE_PIECE_BYTES,
  FILE_PIECES_KEPT,
  HEADERS_TIMEOUT_MS,
  IMAGE_STREAM_PIECE_BYTES,
  KEEP_ALIVE_TIMEOUT_MS,
  REQUEST_TIMEOUT_MS,
  SOCKET_IDLE_TIMEOUT_MS,
} from './server-options.js';
