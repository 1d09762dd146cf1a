/**
 * What `startChunkServer` takes and gives back, its defaults and limits, and the check of
 * its options.
 */

import { isS3Url, type S3ConnectionOptions } from '@liverestore/datastore';
import type { ChunkCache } from '@liverestore/reader';
import type { Logger } from 'pino';

/** Where the server listens by default: loopback only, the PBS API port. */
export const DEFAULT_LISTEN: Readonly<{ host: string; port: number }> = Object.freeze({
  host: '127.0.0.1',
  port: 8007,
});
/**
 * Bytes an image response reads ahead of a slow client: with the socket's own buffers this
 * is what one stalled download costs, so 256 of them stay well under 256 MiB.
 */
export const IMAGE_STREAM_PIECE_BYTES = 256 * 1024;
/**
 * Read size of a file body (chunk blobs, snapshot files): a 4 MiB blob goes out in four
 * reads and writes instead of the 64 of a default file stream.
 */
export const FILE_PIECE_BYTES = 1024 * 1024;
/** Read buffers of file bodies kept for reuse; more are allocated while more are in use. */
export const FILE_PIECES_KEPT = 64;
/** Requests in progress beyond which the server answers 503 (see IMAGE_STREAM_PIECE_BYTES). */
export const DEFAULT_MAX_CONCURRENT_REQUESTS = 256;
/**
 * A response body slower than this (bytes per second, over each {@link DEFAULT_MIN_RATE_WINDOW_MS})
 * is cut: a client trickling a download would otherwise hold a request slot for hours.
 */
export const DEFAULT_MIN_BYTES_PER_SECOND = 4 * 1024;
/** The window over which {@link DEFAULT_MIN_BYTES_PER_SECOND} is measured. */
export const DEFAULT_MIN_RATE_WINDOW_MS = 30_000;
/** Time a client gets to send its request headers. */
export const HEADERS_TIMEOUT_MS = 10_000;
/** Time a client gets to send its whole request (GET/HEAD have no body to wait for). */
export const REQUEST_TIMEOUT_MS = 30_000;
/** Idle time after which a kept-alive connection is closed. */
export const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** A socket with no progress for this long (a client that stopped reading) is destroyed. */
export const SOCKET_IDLE_TIMEOUT_MS = 60_000;
/** How long close() waits for responses in progress before cutting their connections. */
export const CLOSE_GRACE_MS = 5_000;

/** Options of {@link startChunkServer}. */
export interface ChunkServerOptions {
  /** Datastore directory, or an S3 datastore `s3://BUCKET/STORE` (PBS 4.x layout). */
  store: string;
  /**
   * Connection settings of an `s3://` store (endpoint, region, keys, addressing); absent
   * ones come from the AWS_* environment. A server retries a failed S3 request twice by
   * default (`retries`), then answers 503 `ERR_LR_SOURCE_UNAVAILABLE`.
   */
  s3?: S3ConnectionOptions;
  /**
   * Default 127.0.0.1:8007; port 0 picks a free port. `{ fd }`: a listening socket the
   * server is handed (systemd socket activation).
   */
  listen?: { host: string; port: number } | { fd: number };
  /** When set, every request except `/metrics` needs `Authorization: Bearer <token>`. */
  token?: string;
  /** Serve HTTPS with this PEM certificate and key. */
  tls?: { cert: Buffer; key: Buffer };
  /** A shared cache (left open on close); default: the server's own, 256 MiB. */
  cache?: ChunkCache;
  /** Access log and errors; default: pino to stderr at `logLevel`. */
  logger?: Logger;
  /** Level of the default logger: 'info' (default, one line per request), 'warn', 'error', 'silent'. */
  logLevel?: 'info' | 'warn' | 'error' | 'silent';
  /** Requests in progress beyond which the server answers 503; default 256. */
  maxConcurrentRequests?: number;
  /**
   * Requests in progress one client address may hold (beyond: 503); default half of
   * `maxConcurrentRequests`, rounded up. Behind a reverse proxy, set it to `maxConcurrentRequests`.
   */
  maxRequestsPerClient?: number;
  /** A response body slower than this many bytes per second over `minRateWindowMs` is cut; default 4096, 0 = never. */
  minBytesPerSecond?: number;
  /** Window of `minBytesPerSecond`, default 30 s. */
  minRateWindowMs?: number;
}

/** A running server. */
export interface ChunkServer {
  /** `http://127.0.0.1:8007` (no trailing slash). */
  readonly url: string;
  readonly port: number;
  /** Stops accepting, waits (bounded) for responses in progress, closes the cache it owns. */
  close(): Promise<void>;
}

/** Throws a TypeError/RangeError naming the first bad option. */
export function checkOptions(options: ChunkServerOptions): void {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  if (typeof options.store !== 'string' || options.store === '')
    throw new TypeError('store must be a non-empty string');
  if (options.s3 !== undefined && !isS3Url(options.store))
    throw new TypeError('s3 options need an s3://BUCKET/STORE store');
  const listen = options.listen;
  if (listen !== undefined && 'fd' in listen) {
    if (!Number.isInteger(listen.fd) || listen.fd < 0)
      throw new RangeError('listen.fd must be a non-negative integer');
  } else if (listen !== undefined) {
    if (typeof listen.host !== 'string' || listen.host === '')
      throw new TypeError('listen.host must be a non-empty string');
    if (!Number.isInteger(listen.port) || listen.port < 0 || listen.port > 65535)
      throw new RangeError('listen.port must be an integer from 0 to 65535');
  }
  if (options.token !== undefined && (typeof options.token !== 'string' || options.token === ''))
    throw new TypeError('token must be a non-empty string');
  const max = options.maxConcurrentRequests;
  if (max !== undefined && (!Number.isSafeInteger(max) || max < 1))
    throw new RangeError('maxConcurrentRequests must be a positive integer');
  const perClient = options.maxRequestsPerClient;
  if (perClient !== undefined && (!Number.isSafeInteger(perClient) || perClient < 1))
    throw new RangeError('maxRequestsPerClient must be a positive integer');
  const rate = options.minBytesPerSecond;
  if (rate !== undefined && (!Number.isFinite(rate) || rate < 0))
    throw new RangeError('minBytesPerSecond must be a non-negative number');
  const windowMs = options.minRateWindowMs;
  if (windowMs !== undefined && (!Number.isSafeInteger(windowMs) || windowMs < 1 || windowMs > 2 ** 31 - 1))
    throw new RangeError('minRateWindowMs must be an integer from 1 to 2^31-1');
}
