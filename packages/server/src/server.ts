/**
 * The HTTP front end's request lifecycle: admission (the server-wide and per-client
 * request limits, shutting down), authorization, routing to a response, the access log and
 * metrics, listen and close. How each response is written is in responses.ts; the options
 * and their defaults in server-options.ts.
 */

import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { formatSnapshot, isS3Url, type NamespaceScope } from '@liverestore/datastore';
import { snapshotListingJson } from '@liverestore/datastore/internal';
import { LiverestoreError, toHex } from '@liverestore/format';
import { ChunkCache, DEFAULT_CACHE_BYTES } from '@liverestore/reader';
import { destination, pino } from 'pino';
import { ArchivePool } from './archive-pool.js';
import { bearerAuth } from './bearer-auth.js';
import { cacheControlOf, etagMatches } from './cache-headers.js';
import { ClientShares } from './client-limits.js';
import { ConfinedStore } from './confined-store.js';
import { describeError, ServerError } from './errors.js';
import { ServerMetrics } from './metrics.js';
import { type Exchange, Responses } from './responses.js';
import { parseRoute, pathOf, queryOf, type Route } from './routes.js';
import { S3ServedStore } from './s3-served-store.js';
import { closeServedFile, type ServedFile, type ServedStore } from './served-store.js';
import {
  type ChunkServer,
  type ChunkServerOptions,
  CLOSE_GRACE_MS,
  checkOptions,
  DEFAULT_LISTEN,
  DEFAULT_MAX_CONCURRENT_REQUESTS,
  DEFAULT_MIN_BYTES_PER_SECOND,
  DEFAULT_MIN_RATE_WINDOW_MS,
  HEADERS_TIMEOUT_MS,
  IMAGE_STREAM_PIECE_BYTES,
  KEEP_ALIVE_TIMEOUT_MS,
  REQUEST_TIMEOUT_MS,
  SOCKET_IDLE_TIMEOUT_MS,
} from './server-options.js';

/** The store `options.store` names: a datastore directory or `s3://BUCKET/STORE`. */
function openServedStore(options: ChunkServerOptions): Promise<ServedStore> {
  if (isS3Url(options.store)) return S3ServedStore.open(options.store, options.s3);
  return ConfinedStore.open(options.store);
}

/**
 * Serves a datastore read-only over HTTP(S): the snapshot list, raw index and manifest
 * files, chunk blobs by digest, and the reconstructed image of every fixed-index archive
 * with Range support, all reads of images going through one shared chunk cache.
 */
export async function startChunkServer(options: ChunkServerOptions): Promise<ChunkServer> {
  checkOptions(options);
  const source = await openServedStore(options);
  const listen = options.listen ?? DEFAULT_LISTEN;
  const maxActive = options.maxConcurrentRequests ?? DEFAULT_MAX_CONCURRENT_REQUESTS;
  const shares = new ClientShares(options.maxRequestsPerClient ?? Math.ceil(maxActive / 2));
  const minBytesPerSecond = options.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND;
  const minRateWindowMs = options.minRateWindowMs ?? DEFAULT_MIN_RATE_WINDOW_MS;
  const logger =
    options.logger ?? pino({ name: 'liverestore-server', level: options.logLevel ?? 'info' }, destination(2));
  const ownsCache = options.cache === undefined;
  const cache = options.cache ?? new ChunkCache({ cacheBytes: DEFAULT_CACHE_BYTES });
  const pool = new ArchivePool(source.chunkSource, cache);
  const metrics = new ServerMetrics(cache);
  const authorized = bearerAuth(options.token);
  const storeDir = source.name;
  const respond = new Responses({ logger, metrics, storeDir, minBytesPerSecond, minRateWindowMs });

  let active = 0; // counted against maxActive (everything but /metrics)
  let inFlight = 0; // every request, for close()
  let closing = false;
  let drained: (() => void) | undefined;

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

  async function listNamespaces(ex: Exchange, scope: NamespaceScope): Promise<void> {
    respond.json(
      ex,
      200,
      (await source.listings.listNamespaces(scope)).map((ns) => ({ ns })),
    );
  }

  async function listSnapshots(ex: Exchange, scope: NamespaceScope): Promise<void> {
    const out: unknown[] = [];
    for (const ref of await source.listings.listSnapshotRefs(scope)) {
      try {
        const s = await source.listings.snapshotInfo(ref);
        out.push(snapshotListingJson(s));
      } catch (err) {
        // One unreadable manifest must not hide the other snapshots (as `snapshots --json`).
        if (!(err instanceof LiverestoreError)) throw err;
        const { code, message } = describeError(err, storeDir);
        out.push({ snapshot: formatSnapshot(ref), error: { code, message } });
      }
    }
    respond.json(ex, 200, out);
  }

  /**
   * A chunk blob: cacheable for good (cache-headers.ts), its digest as strong ETag, 304 to
   * an If-None-Match that names it (once the store is known to hold it).
   */
  async function sendChunk(ex: Exchange, digestHex: string): Promise<void> {
    const etag = `"${digestHex}"`;
    const validated = etagMatches(ex.req.headers['if-none-match'], etag);
    const file = await source.openChunk(digestHex, ex.req.method === 'GET' && !validated);
    if (validated) {
      await closeServedFile(file);
      ex.res.writeHead(304, { etag });
      ex.res.end();
      return;
    }
    return sendFile(ex, file, etag);
  }

  /** A local file read in pieces, or an S3 object already in memory. */
  async function sendFile(ex: Exchange, file: ServedFile, etag?: string): Promise<void> {
    if ('handle' in file) return respond.file(ex, file, etag);
    respond.object(ex, file, etag);
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
    const { start, end } = respond.bodyHead(ex, size, etag);
    if (req.method === 'HEAD' || end < start) {
      res.end();
      return;
    }
    // Send the status now: a client learns it at once even when the first chunk is slow to load.
    res.flushHeaders();
    await respond.stream(
      ex,
      reader.createReadStream({ start, end, highWaterMark: IMAGE_STREAM_PIECE_BYTES }),
    );
  }

  async function serve(ex: Exchange, path: string): Promise<void> {
    const { req } = ex;
    if (path !== '/metrics' && !authorized(req))
      throw new ServerError('ERR_LR_HTTP_UNAUTHORIZED', 'a valid bearer token is required');
    if (req.method !== 'GET' && req.method !== 'HEAD')
      throw new ServerError('ERR_LR_HTTP_METHOD_NOT_ALLOWED', `method ${req.method} is not allowed`);
    const route = parseRoute(path, queryOf(req.url));
    ex.route = route.kind;
    // For the answers below; an error answer says no-store instead (Responses.error).
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
        return sendFile(ex, await source.openSnapshotFile(route.ref, route.filename, req.method === 'GET'));
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
      respond.error(ex, new ServerError('ERR_LR_HTTP_CLOSING', 'the server is shutting down'));
      return;
    }
    if (counted && active > maxActive) {
      respond.error(ex, new ServerError('ERR_LR_HTTP_BUSY', 'too many requests in progress; retry shortly'));
      return;
    }
    const client = req.socket.remoteAddress ?? '';
    if (counted) {
      if (!shares.tryTake(client)) {
        respond.error(
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
    serve(ex, path).catch((err: unknown) => respond.error(ex, err));
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
      const listening = () => {
        server.off('error', reject);
        resolve();
      };
      if ('fd' in listen) server.listen({ fd: listen.fd }, listening);
      else server.listen(listen.port, listen.host, listening);
    });
  } catch (cause) {
    if (ownsCache) await cache.close();
    await source.close();
    // One code for "cannot listen" in every front end (was ERR_LR_SYSTEM here).
    throw new ServerError(
      'ERR_LR_LISTEN',
      `cannot listen on ${'fd' in listen ? `fd ${listen.fd}` : `${listen.host}:${listen.port}`} (${(cause as { code?: string }).code ?? String(cause)})`,
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
    await source.close();
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
