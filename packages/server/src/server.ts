import { createHash, timingSafeEqual } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatSnapshot, type NamespaceScope, snapshotListingJson } from '@liverestore/datastore';
import { LiverestoreError, toHex } from '@liverestore/format';
import { ChunkCache, DEFAULT_CACHE_BYTES } from '@liverestore/reader';
import { destination, type Logger, pino } from 'pino';
import { ArchivePool } from './archive-pool.js';
import { cacheControlOf, etagMatches, NO_STORE } from './cache-headers.js';
import { ClientShares, enforceMinTransferRate } from './client-limits.js';
import { type ConfinedFile, ConfinedStore } from './confined-store.js';
import { describeError, ServerError } from './errors.js';
import { ServerMetrics } from './metrics.js';
import { parseRange, RangeNotSatisfiableError } from './range.js';
import { parseRoute, pathOf, queryOf, type Route, type RouteLabel } from './routes.js';

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
  /** Datastore directory. */
  store: string;
  /** Default 127.0.0.1:8007; port 0 picks a free port. */
  listen?: { host: string; port: number };
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

/** What one request did, for the access log and the metrics. */
interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly startMs: number;
  route: RouteLabel;
  code: string | undefined;
  bytes: number;
  /** The client address whose share this request holds (see ClientShares). */
  share?: string;
}

/** Equal-sized buffers handed out and given back; at most `keep` idle ones are held. */
class PieceBuffers {
  readonly #free: Buffer[] = [];
  constructor(
    readonly bytes: number,
    readonly keep: number,
  ) {}

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.bytes);
  }

  give(buffer: Buffer): void {
    if (this.#free.length < this.keep) this.#free.push(buffer);
  }
}

/** Resolves when `res` wants more data ('drain') or can take none ('close'). */
function writable(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

const ALLOW = 'GET, HEAD';
const JSON_TYPE = 'application/json; charset=utf-8';
const OCTETS = 'application/octet-stream';

function checkOptions(options: ChunkServerOptions): void {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  if (typeof options.store !== 'string' || options.store === '')
    throw new TypeError('store must be a non-empty string');
  const listen = options.listen;
  if (listen !== undefined) {
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

/**
 * Serves a datastore read-only over HTTP(S): the snapshot list, raw index and manifest
 * files, chunk blobs by digest, and the reconstructed image of every fixed-index archive
 * with Range support, all reads of images going through one shared chunk cache.
 */
export async function startChunkServer(options: ChunkServerOptions): Promise<ChunkServer> {
  checkOptions(options);
  const source = await ConfinedStore.open(options.store);
  const listen = options.listen ?? DEFAULT_LISTEN;
  const maxActive = options.maxConcurrentRequests ?? DEFAULT_MAX_CONCURRENT_REQUESTS;
  const shares = new ClientShares(options.maxRequestsPerClient ?? Math.ceil(maxActive / 2));
  const minBytesPerSecond = options.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND;
  const minRateWindowMs = options.minRateWindowMs ?? DEFAULT_MIN_RATE_WINDOW_MS;
  const logger =
    options.logger ?? pino({ name: 'liverestore-server', level: options.logLevel ?? 'info' }, destination(2));
  const ownsCache = options.cache === undefined;
  const cache = options.cache ?? new ChunkCache({ cacheBytes: DEFAULT_CACHE_BYTES });
  const pool = new ArchivePool(source, cache);
  const pieces = new PieceBuffers(FILE_PIECE_BYTES, FILE_PIECES_KEPT);
  const metrics = new ServerMetrics(cache);
  const expectedAuth =
    options.token === undefined ? undefined : createHash('sha256').update(`Bearer ${options.token}`).digest();
  const storeDir = source.store.dir;

  let active = 0; // counted against maxActive (everything but /metrics)
  let inFlight = 0; // every request, for close()
  let closing = false;
  let drained: (() => void) | undefined;

  function authorized(req: IncomingMessage): boolean {
    if (expectedAuth === undefined) return true;
    const given = req.headers.authorization;
    if (given === undefined) return false;
    // QEMU's curl driver can only send Basic auth: accept any user name with the token as
    // password, i.e. "Basic base64(user:token)", compared the same way.
    let presented = given;
    if (/^basic /i.test(given)) {
      const decoded = Buffer.from(given.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      presented = colon < 0 ? '' : `Bearer ${decoded.slice(colon + 1)}`;
    }
    // Hash both sides: equal lengths for timingSafeEqual, and no length leak.
    return timingSafeEqual(createHash('sha256').update(presented).digest(), expectedAuth);
  }

  function finish(ex: Exchange, counted: boolean): void {
    if (counted) active--;
    if (ex.share !== undefined) shares.give(ex.share);
    inFlight--;
    if (inFlight === 0) drained?.();
    const ms = performance.now() - ex.startMs;
    const status = ex.res.statusCode;
    const aborted = !ex.res.writableFinished;
    metrics.observe(ex.route, status, ex.bytes, ms / 1000, ex.code);
    logger.info(
      {
        method: ex.req.method,
        path: (ex.req.url ?? '').slice(0, 256),
        status,
        bytes: ex.bytes,
        ms: Math.round(ms * 10) / 10,
        remote: ex.req.socket.remoteAddress,
        ...(ex.code === undefined ? {} : { code: ex.code }),
        ...(aborted ? { aborted: true } : {}),
      },
      'request',
    );
  }

  function sendJson(ex: Exchange, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = Buffer.from(JSON.stringify(body));
    ex.res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': text.length, ...headers });
    if (ex.req.method === 'HEAD') {
      ex.res.end();
      return;
    }
    ex.bytes += text.length;
    ex.res.end(text);
  }

  function sendError(ex: Exchange, err: unknown): void {
    const { status, code, message } = describeError(err, storeDir);
    ex.code = code;
    if (status >= 500 && !(err instanceof ServerError)) logger.error({ err, code }, 'request failed');
    if (ex.res.headersSent) {
      // Mid-body: the only honest signal left is a cut connection.
      ex.res.destroy();
      return;
    }
    const headers: Record<string, string> = {
      'x-content-type-options': 'nosniff',
      'cache-control': NO_STORE,
    };
    if (status === 401) headers['www-authenticate'] = 'Bearer';
    if (status === 405) headers.allow = ALLOW;
    if (status === 503) headers['retry-after'] = '1';
    if (err instanceof RangeNotSatisfiableError) headers['content-range'] = `bytes */${err.sizeBytes}`;
    sendJson(ex, status, { error: { code, message } }, headers);
  }

  /** Cuts `ex`'s response when its body moves slower than the minimum rate (see client-limits.ts). */
  function watchRate(ex: Exchange): void {
    enforceMinTransferRate(ex.res, minBytesPerSecond, minRateWindowMs, FILE_PIECE_BYTES, () => {
      ex.code = 'ERR_LR_HTTP_TOO_SLOW';
      logger.warn(
        { remote: ex.req.socket.remoteAddress, path: (ex.req.url ?? '').slice(0, 256), bytes: ex.bytes },
        `response cut: the client read less than ${minBytesPerSecond} bytes/s over ${minRateWindowMs} ms`,
      );
      // A reset, not a FIN: the bytes still queued for this client are dropped with it
      // (a FIN would wait behind them, and keep them in kernel memory, for as long as it reads).
      const socket = ex.res.socket;
      if (socket !== null && socket.resetAndDestroy !== undefined) socket.resetAndDestroy();
      else ex.res.destroy();
    });
  }

  /** Pipes a body with backpressure; a client that goes away destroys `body` (and its pending reads). */
  async function sendStream(ex: Exchange, body: Readable): Promise<void> {
    body.on('data', (piece: Buffer) => {
      ex.bytes += piece.length;
    });
    watchRate(ex);
    try {
      await pipeline(body, ex.res);
    } catch (err) {
      // The client went away: the pipeline cut the body (and aborted its reads); not a server error.
      const aborted = !(err instanceof LiverestoreError) || err.code === 'ERR_LR_ABORTED';
      if (ex.res.destroyed && aborted) return;
      sendError(ex, err);
    }
  }

  /**
   * Writes the status and headers of a body of `size` bytes as Range and If-Range ask
   * (206 with Content-Range, or 200) and returns the inclusive byte range to send. Throws
   * the 400/416 of a bad Range before anything is written.
   */
  function writeBodyHead(
    ex: Exchange,
    size: number,
    etag: string | undefined,
  ): { start: number; end: number } {
    const { req, res } = ex;
    const ifRange = req.headers['if-range'];
    const range = ifRange === undefined || ifRange === etag ? parseRange(req.headers.range, size) : undefined;
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const headers: Record<string, string | number> = {
      'content-type': OCTETS,
      'content-length': end - start + 1,
      'accept-ranges': 'bytes',
      ...(etag === undefined ? {} : { etag }),
    };
    if (range !== undefined) headers['content-range'] = `bytes ${start}-${end}/${size}`;
    res.writeHead(range === undefined ? 200 : 206, headers);
    return { start, end };
  }

  /**
   * A file of the store, with Range support: chunk blobs and snapshot files never change
   * once written (content-addressed or written once, atomically), so a client may fetch
   * one in pieces. `etag` (a chunk's digest) lets a client validate with If-Range.
   */
  async function sendFile(ex: Exchange, file: ConfinedFile, etag?: string): Promise<void> {
    const { req, res } = ex;
    let start: number;
    let end: number;
    try {
      ({ start, end } = writeBodyHead(ex, file.sizeBytes, etag));
    } catch (err) {
      await file.handle.close();
      throw err;
    }
    if (ex.route === 'chunk' && req.method === 'GET' && start === 0) metrics.chunkFetch();
    if (req.method === 'HEAD' || end < start) {
      await file.handle.close();
      res.end();
      return;
    }
    await sendFileBody(ex, file, start, end);
  }

  /**
   * Bytes `start`…`end` (inclusive) of `file`, read into reused buffers and closed after.
   * A buffer returns to `pieces` when the socket has taken its bytes (the write callback),
   * so a busy server allocates nothing per response: with a fresh 1 MiB buffer per read
   * (a file stream), garbage collection was half of the CPU time of serving blobs. The
   * next piece is read while the previous one is still being written.
   */
  async function sendFileBody(ex: Exchange, file: ConfinedFile, start: number, end: number): Promise<void> {
    const { res } = ex;
    let writing: Promise<void> | undefined;
    watchRate(ex);
    try {
      for (let at = start; at <= end && !res.destroyed; ) {
        const piece = pieces.take();
        let n: number;
        try {
          ({ bytesRead: n } = await file.handle.read(piece, 0, Math.min(piece.length, end + 1 - at), at));
          if (n === 0)
            throw new Error(`file ended at byte ${at} of the ${file.sizeBytes} it had when opened`);
        } catch (err) {
          pieces.give(piece);
          throw err;
        }
        await writing;
        if (res.destroyed) {
          pieces.give(piece);
          break;
        }
        at += n;
        ex.bytes += n;
        const flushed = res.write(piece.subarray(0, n), (err) => {
          if (err == null) pieces.give(piece);
        });
        writing = flushed ? undefined : writable(res);
      }
      await writing;
      res.end();
    } catch (err) {
      if (!res.destroyed) sendError(ex, err);
    } finally {
      await file.handle.close();
    }
  }

  /**
   * A chunk blob: cacheable for good (cache-headers.ts), its digest as strong ETag, 304 to
   * an If-None-Match that names it (once the store is known to hold it).
   */
  async function sendChunk(ex: Exchange, digestHex: string): Promise<void> {
    const file = await source.openChunk(digestHex);
    const etag = `"${digestHex}"`;
    if (etagMatches(ex.req.headers['if-none-match'], etag)) {
      await file.handle.close();
      ex.res.writeHead(304, { etag });
      ex.res.end();
      return;
    }
    return sendFile(ex, file, etag);
  }

  async function listNamespaces(ex: Exchange, scope: NamespaceScope): Promise<void> {
    sendJson(
      ex,
      200,
      (await source.store.listNamespaces(scope)).map((ns) => ({ ns })),
    );
  }

  async function listSnapshots(ex: Exchange, scope: NamespaceScope): Promise<void> {
    const out: unknown[] = [];
    for (const ref of await source.store.listSnapshotRefs(scope)) {
      try {
        const s = await source.store.snapshotInfo(ref);
        out.push(snapshotListingJson(s));
      } catch (err) {
        // One unreadable manifest must not hide the other snapshots (as `snapshots --json`).
        if (!(err instanceof LiverestoreError)) throw err;
        const { code, message } = describeError(err, storeDir);
        out.push({ snapshot: formatSnapshot(ref), error: { code, message } });
      }
    }
    sendJson(ex, 200, out);
  }

  async function sendImage(ex: Exchange, route: Extract<Route, { kind: 'image' }>): Promise<void> {
    const reader = await pool.reader(route.ref, route.archive);
    const size = reader.size;
    const etag = `"${toHex(reader.index.indexCsum)}"`;
    const { req, res } = ex;
    if (etagMatches(req.headers['if-none-match'], etag)) {
      res.writeHead(304, { etag, 'accept-ranges': 'bytes' });
      res.end();
      return;
    }
    const { start, end } = writeBodyHead(ex, size, etag);
    if (req.method === 'HEAD' || end < start) {
      res.end();
      return;
    }
    // Send the status now: a client learns it at once even when the first chunk is slow to load.
    res.flushHeaders();
    await sendStream(ex, reader.createReadStream({ start, end, highWaterMark: IMAGE_STREAM_PIECE_BYTES }));
  }

  async function serve(ex: Exchange, path: string): Promise<void> {
    const { req } = ex;
    if (path !== '/metrics' && !authorized(req))
      throw new ServerError('ERR_LR_HTTP_UNAUTHORIZED', 'a valid bearer token is required');
    if (req.method !== 'GET' && req.method !== 'HEAD')
      throw new ServerError('ERR_LR_HTTP_METHOD_NOT_ALLOWED', `method ${req.method} is not allowed`);
    const route = parseRoute(path, queryOf(req.url));
    ex.route = route.kind;
    // For the answers below; an error answer says no-store instead (sendError).
    ex.res.setHeader('cache-control', cacheControlOf(route.kind));
    switch (route.kind) {
      case 'metrics': {
        const text = Buffer.from(await metrics.registry.metrics());
        ex.res.writeHead(200, {
          'content-type': metrics.registry.contentType,
          'content-length': text.length,
        });
        if (req.method === 'HEAD') ex.res.end();
        else {
          ex.bytes += text.length;
          ex.res.end(text);
        }
        return;
      }
      case 'snapshots':
        return listSnapshots(ex, route.scope);
      case 'namespaces':
        return listNamespaces(ex, route.scope);
      case 'chunk':
        return sendChunk(ex, route.digestHex);
      case 'snapshot-file':
        return sendFile(ex, await source.openSnapshotFile(route.ref, route.filename));
      case 'image':
        return sendImage(ex, route);
    }
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const ex: Exchange = {
      req,
      res,
      startMs: performance.now(),
      route: 'unknown',
      code: undefined,
      bytes: 0,
    };
    const path = pathOf(req.url);
    const counted = path !== '/metrics';
    inFlight++;
    res.once('close', () => finish(ex, counted));
    if (counted) active++;
    if (closing) {
      res.setHeader('connection', 'close');
      sendError(ex, new ServerError('ERR_LR_HTTP_CLOSING', 'the server is shutting down'));
      return;
    }
    if (counted && active > maxActive) {
      sendError(ex, new ServerError('ERR_LR_HTTP_BUSY', 'too many requests in progress; retry shortly'));
      return;
    }
    const client = req.socket.remoteAddress ?? '';
    if (counted) {
      if (!shares.tryTake(client)) {
        sendError(
          ex,
          new ServerError(
            'ERR_LR_HTTP_BUSY',
            'too many requests in progress from your address; retry shortly',
          ),
        );
        return;
      }
      ex.share = client;
    }
    serve(ex, path).catch((err: unknown) => sendError(ex, err));
  }

  const server: Server =
    options.tls === undefined
      ? createHttpServer(onRequest)
      : (createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, onRequest) as unknown as Server);
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.setTimeout(SOCKET_IDLE_TIMEOUT_MS);

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (cause) {
    if (ownsCache) await cache.close();
    // One code for "cannot listen" in every front end (was ERR_LR_SYSTEM here).
    throw new ServerError(
      'ERR_LR_LISTEN',
      `cannot listen on ${listen.host}:${listen.port} (${(cause as { code?: string }).code ?? String(cause)})`,
      { cause },
    );
  }
  server.on('error', (err) => logger.error({ err }, 'server error'));
  const address = server.address() as AddressInfo;
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  const url = `${options.tls === undefined ? 'http' : 'https'}://${host}:${address.port}`;
  logger.info({ url, store: storeDir }, 'listening');

  let closed: Promise<void> | undefined;
  async function close(): Promise<void> {
    closing = true;
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    if (inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        drained = resolve;
        timer = setTimeout(resolve, CLOSE_GRACE_MS);
      });
      clearTimeout(timer);
    }
    server.closeAllConnections();
    await stopped;
    await pool.close();
    if (ownsCache) await cache.close();
  }

  return {
    url,
    port: address.port,
    close() {
      closed ??= close();
      return closed;
    },
  };
}
