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
