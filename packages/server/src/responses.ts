/**
 * How the server answers one request: JSON bodies, errors (status, headers, code), store
 * files with Range and reused read buffers, streamed image bodies, and the minimum
 * transfer rate every body is held to. The routing and admission of requests is in
 * server.ts.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LiverestoreError } from '@liverestore/format';
import type { Logger } from 'pino';
import { NO_STORE } from './cache-headers.js';
import { enforceMinTransferRate } from './client-limits.js';
import type { ConfinedFile } from './confined-store.js';
import { describeError, ServerError } from './errors.js';
import type { ServerMetrics } from './metrics.js';
import { parseRange, RangeNotSatisfiableError } from './range.js';
import type { RouteLabel } from './routes.js';
import type { ObjectBody } from './served-store.js';
import { FILE_PIECE_BYTES, FILE_PIECES_KEPT } from './server-options.js';

/** What one request did, for the access log and the metrics. */
export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly startMs: number;
  route: RouteLabel;
  code: string | undefined;
  bytes: number;
  /** The client address whose share this request holds (see ClientShares). */
  share?: string;
}

/** Methods the server answers; anything else is 405 with this `Allow`. */
export const ALLOW = 'GET, HEAD';
const JSON_TYPE = 'application/json; charset=utf-8';
const OCTETS = 'application/octet-stream';

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

/** What the responses of one server share. */
export interface ResponsesOptions {
  readonly logger: Logger;
  readonly metrics: ServerMetrics;
  /** The store directory, redacted from error messages. */
  readonly storeDir: string;
  readonly minBytesPerSecond: number;
  readonly minRateWindowMs: number;
}

/** The response side of one server; one instance serves every request. */
export class Responses {
  readonly #pieces = new PieceBuffers(FILE_PIECE_BYTES, FILE_PIECES_KEPT);

  constructor(readonly options: ResponsesOptions) {}

  json(ex: Exchange, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = Buffer.from(JSON.stringify(body));
    ex.res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': text.length, ...headers });
    if (ex.req.method === 'HEAD') {
      ex.res.end();
      return;
    }
    ex.bytes += text.length;
    ex.res.end(text);
  }

  error(ex: Exchange, err: unknown): void {
    const { status, code, message } = describeError(err, this.options.storeDir);
    ex.code = code;
    if (status >= 500 && !(err instanceof ServerError))
      this.options.logger.error({ err, code }, 'request failed');
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
    this.json(ex, status, { error: { code, message } }, headers);
  }

  /** Cuts `ex`'s response when its body moves slower than the minimum rate (see client-limits.ts). */
  #watchRate(ex: Exchange): void {
    const { logger, minBytesPerSecond, minRateWindowMs } = this.options;
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
  async stream(ex: Exchange, body: Readable): Promise<void> {
    body.on('data', (piece: Buffer) => {
      ex.bytes += piece.length;
    });
    this.#watchRate(ex);
    try {
      await pipeline(body, ex.res);
    } catch (err) {
      // The client went away: the pipeline cut the body (and aborted its reads); not a server error.
      const aborted = !(err instanceof LiverestoreError) || err.code === 'ERR_LR_ABORTED';
      if (ex.res.destroyed && aborted) return;
      this.error(ex, err);
    }
  }

  /**
   * Writes the status and headers of a body of `size` bytes as Range and If-Range ask
   * (206 with Content-Range, or 200) and returns the inclusive byte range to send. Throws
   * the 400/416 of a bad Range before anything is written.
   */
  bodyHead(ex: Exchange, size: number, etag: string | undefined): { start: number; end: number } {
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
  async file(ex: Exchange, file: ConfinedFile, etag?: string): Promise<void> {
    const { req, res } = ex;
    let start: number;
    let end: number;
    try {
      ({ start, end } = this.bodyHead(ex, file.sizeBytes, etag));
    } catch (err) {
      await file.handle.close();
      throw err;
    }
    if (ex.route === 'chunk' && req.method === 'GET' && start === 0) this.options.metrics.chunkFetch();
    if (req.method === 'HEAD' || end < start) {
      await file.handle.close();
      res.end();
      return;
    }
    await this.#fileBody(ex, file, start, end);
  }

  /**
   * An S3 object, in memory (for a HEAD only its size), with the Range answers of
   * {@link file}: always a Content-Length, never chunked encoding.
   */
  object(ex: Exchange, object: ObjectBody, etag?: string): void {
    const { req, res } = ex;
    const { start, end } = this.bodyHead(ex, object.sizeBytes, etag);
    if (ex.route === 'chunk' && req.method === 'GET' && start === 0) this.options.metrics.chunkFetch();
    if (req.method === 'HEAD' || end < start || object.bytes === undefined) {
      res.end();
      return;
    }
    this.#watchRate(ex);
    ex.bytes += end + 1 - start;
    res.end(object.bytes.subarray(start, end + 1));
  }

  /**
   * Bytes `start`…`end` (inclusive) of `file`, read into reused buffers and closed after.
   * A buffer returns to the pool when the socket has taken its bytes (the write callback),
   * so a busy server allocates nothing per response: with a fresh 1 MiB buffer per read
   * (a file stream), garbage collection was half of the CPU time of serving blobs. The
   * next piece is read while the previous one is still being written.
   */
  async #fileBody(ex: Exchange, file: ConfinedFile, start: number, end: number): Promise<void> {
    const { res } = ex;
    const pieces = this.#pieces;
    let writing: Promise<void> | undefined;
    this.#watchRate(ex);
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
      if (!res.destroyed) this.error(ex, err);
    } finally {
      await file.handle.close();
    }
  }
}
