import {
  describeNamespace,
  formatGroup,
  formatSnapshot,
  inNamespace,
  MAX_NAMESPACE_DEPTH,
  type NamespaceScope,
  namespaceOf,
  ROOT_NAMESPACE,
  type SnapshotRef,
  type SnapshotSpec,
} from '@liverestore/datastore';
import { isHexDigest, LiverestoreError, MAX_BLOB_BYTES } from '@liverestore/format';
import { Pool } from 'undici';
import type { ChunkSource, FetchHints } from './chunk-source.js';
import { abortError, ReaderError } from './errors.js';
import { listingQuery, parseListing, parseNamespaceListing, snapshotFilePath } from './http-listing.js';

/*
 * A liverestore HTTP server as a chunk source. The paths are the server's public interface:
 *
 *   GET /snapshots[?ns=a/b&max-depth=N]     JSON [{ snapshot, ns, type, id, time, archives }]
 *   GET /namespaces[?ns=a/b&max-depth=N]    JSON [{ ns }]
 *   GET /snapshots/[ns/a/…/]{type}/{id}/{time}/{file} raw snapshot file (index, index.json.blob)
 *   GET /chunks/{64 hex}                     raw chunk blob
 *
 * Errors come back as JSON `{ error: { code, message } }`. Every request goes through one
 * keep-alive pool; each attempt has a deadline covering headers and body; connection
 * failures, timeouts and 5xx are retried with exponential backoff and equal jitter, 4xx
 * never. Bodies are bounded and copied into a fresh array the caller owns. The server is
 * not trusted: blobs are checked by the decode pool, listings are validated here.
 *
 * Urgent fetches go first on the link (see FetchHints). An urgent fetch is one GET. A
 * background fetch runs in one of a few lanes (so the blobs it holds do not grow with the
 * number of readers) and yields: it starts only while no urgent fetch is in flight, and
 * when one starts, background requests on the wire are cut and later resumed with
 * `Range` from the first byte not yet received. An urgent fetch thus has the link to
 * itself after about one round trip, instead of sharing it with megabytes of readahead.
 * A background fetch that becomes urgent gets its rest in one urgent GET.
 */

/** Default per-attempt deadline (headers and body). */
export const DEFAULT_HTTP_TIMEOUT_MS = 30_000;
/** Default retries after the first attempt. */
export const DEFAULT_HTTP_RETRIES = 8;
/**
 * Default keep-alive pool size, and so requests on the wire at most. Four 4 MiB blobs in
 * flight fill a 1 Gbit/s link at 1 ms (and 16 MiB covers 100 ms at 1 Gbit/s); every
 * request's body is held while it arrives, so more only adds memory that grows with the
 * number of readers missing at once (16 cost `liverestore nbd` ≈ 25 MiB more at 8 drives
 * than at one, and no speed).
 */
export const DEFAULT_HTTP_CONNECTIONS = 4;
/** Default background fetches in flight at once (lanes). */
export const DEFAULT_HTTP_BACKGROUND_FETCHES = 4;
/** First backoff step: the n-th retry sleeps a random time in [c/2, c) with c = min(cap, base·2ⁿ⁻¹) (equal jitter). */
export const HTTP_BACKOFF_BASE_MS = 100;
/** Longest backoff sleep: a restarting server is polled at least this often. */
export const HTTP_BACKOFF_CAP_MS = 2_000;
/** Largest chunk blob accepted: the largest blob payload plus a generous header allowance. */
export const MAX_HTTP_CHUNK_BYTES = MAX_BLOB_BYTES + 4096;
/** Largest snapshot listing accepted. */
export const MAX_HTTP_LISTING_BYTES = 64 * 1024 * 1024;
/** Largest snapshot file accepted (a fixed index of a 32 TiB disk in 4 MiB chunks is 256 MiB). */
export const MAX_HTTP_SNAPSHOT_FILE_BYTES = 512 * 1024 * 1024;
/** Largest error body read (the JSON error object); anything longer is cut off. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/** Options of {@link HttpChunkSource.open}. */
export interface HttpChunkSourceOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string | undefined;
  /** Deadline of one attempt, headers and body together. Default 30 000. */
  timeoutMs?: number | undefined;
  /** Attempts after the first for transient failures. Default 8. */
  retries?: number | undefined;
  /** Keep-alive connections to the server: requests on the wire at most. Default 4. */
  connections?: number | undefined;
  /** Background (readahead, sequential) fetches in flight at once. Default 4. */
  backgroundFetches?: number | undefined;
  /** TLS settings of an https:// URL. */
  tls?: { rejectUnauthorized?: boolean | undefined; ca?: Buffer | undefined } | undefined;
}

/** True when `text` names an HTTP(S) source rather than a datastore directory. */
export function isSourceUrl(text: string): boolean {
  return /^https?:\/\//i.test(text);
}

/** Network failures worth another attempt: the server may be restarting or the path flapping. */
const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ERR_LR_SOURCE_TIMEOUT',
  'ERR_LR_SOURCE_HTTP_5XX',
]);

function isRetryable(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && (RETRYABLE_CODES.has(code) || code.startsWith('HPE_'))) return true;
  // Errors without a code but with a network cause (AggregateError of a dual-stack connect).
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  if (cause !== undefined && cause !== err) return isRetryable(cause);
  const errors = (err as { errors?: unknown } | undefined)?.errors;
  return Array.isArray(errors) && errors.some(isRetryable);
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
}

function checkPositiveInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
}

function checkNonNegativeInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`${name} must be a non-negative integer`);
}

/**
 * Abort callbacks by signal, with one real listener per signal: a restore has dozens of
 * fetches in flight on the same caller signal (and every request links to the source's
 * close signal), which would otherwise pile up listeners and trigger Node's leak warning.
 */
const abortCallbacks = new WeakMap<AbortSignal, Set<() => void>>();

/** Calls `fn` once when `signal` aborts; returns the function that unregisters it. */
function onAbort(signal: AbortSignal, fn: () => void): () => void {
  let callbacks = abortCallbacks.get(signal);
  if (callbacks === undefined) {
    const created = new Set<() => void>();
    callbacks = created;
    abortCallbacks.set(signal, created);
    signal.addEventListener(
      'abort',
      () => {
        const pending = [...created];
        created.clear();
        for (const callback of pending) callback();
      },
      { once: true },
    );
  }
  const registered = callbacks;
  registered.add(fn);
  return () => registered.delete(fn);
}

/** Sleeps `ms`, or rejects as soon as `signal` fires. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const unregister = onAbort(signal, () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
    const timer = setTimeout(() => {
      unregister();
      resolve();
    }, ms);
  });
}

/** What a request expects back, for error codes and bounds. */
interface RequestKind {
  /** Code of a 404 whose body names none (or an unusable one). */
  readonly notFoundCode: string;
  readonly maxBytes: number;
  /** For messages: `chunk 0123…`, `the snapshot list`. */
  readonly what: string;
}

/**
 * A liverestore HTTP chunk server as a {@link ChunkSource}. Many fetches may be in flight
 * at once over a keep-alive pool; transient failures are retried here (the cache never
 * retries), so a server restart during a live restore costs a pause, not the restore.
 */
export class HttpChunkSource implements ChunkSource {
  /** The base URL, without credentials: what logs and errors show. */
  readonly name: string;
  /** Every chunk body is read into a fresh array that only the caller holds. */
  readonly blobsAreTransferable = true;
  readonly #pool: Pool;
  /** Path prefix of the server (`''` or `/some/prefix`), without a trailing slash. */
  readonly #prefix: string;
  readonly #authorization: string | undefined;
  readonly #timeoutMs: number;
  readonly #retries: number;
  /** Fires on close: every attempt and backoff sleep stops. */
  readonly #closing = new AbortController();
  /** Requests on the wire at most: one per pooled connection. */
  readonly #slots: Semaphore;
  /** Background fetches in flight at most. */
  readonly #lanes: Semaphore;
  /** Urgent fetches started and not finished: while any is, background fetches wait. */
  #urgentFetches = 0;
  /** Background fetches waiting for the urgent fetches to end. */
  readonly #linkWaiters = new Set<() => void>();
  /** Background requests on the wire: aborted (and resumed later) when an urgent fetch starts. */
  readonly #yielding = new Set<AbortController>();
  #closed = false;

  private constructor(base: URL, options: HttpChunkSourceOptions) {
    this.#prefix = base.pathname.replace(/\/+$/, '');
    this.name = `${base.origin}${this.#prefix}`;
    this.#authorization = options.token === undefined ? undefined : `Bearer ${options.token}`;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS;
    this.#retries = options.retries ?? DEFAULT_HTTP_RETRIES;
    const connections = options.connections ?? DEFAULT_HTTP_CONNECTIONS;
    this.#slots = new Semaphore(connections);
    this.#lanes = new Semaphore(options.backgroundFetches ?? DEFAULT_HTTP_BACKGROUND_FETCHES);
    const tls = options.tls;
    this.#pool = new Pool(base.origin, {
      connections,
      pipelining: 1,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      connectTimeout: this.#timeoutMs,
      ...(tls === undefined
        ? {}
        : {
            connect: {
              ...(tls.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: tls.rejectUnauthorized }),
              ...(tls.ca === undefined ? {} : { ca: tls.ca }),
            },
          }),
    });
  }

  /**
   * Prepares a source for `url` (`http://host:port` or `https://host/prefix`). No request
   * is made yet: the first listing or fetch connects, so open itself cannot fail on the network.
   */
  static async open(url: string, options: HttpChunkSourceOptions = {}): Promise<HttpChunkSource> {
    if (!isSourceUrl(url)) throw new TypeError(`url must start with http:// or https://, got "${url}"`);
    let base: URL;
    try {
      base = new URL(url);
    } catch {
      throw new TypeError(`url is not a valid URL: "${url}"`);
    }
    if (base.username !== '' || base.password !== '')
      throw new TypeError('url must not carry credentials: pass token instead');
    if (base.search !== '' || base.hash !== '') throw new TypeError('url must not have a query or fragment');
    if (options.timeoutMs !== undefined) checkPositiveInteger(options.timeoutMs, 'timeoutMs');
    if (options.retries !== undefined) checkNonNegativeInteger(options.retries, 'retries');
    if (options.connections !== undefined) checkPositiveInteger(options.connections, 'connections');
    if (options.backgroundFetches !== undefined)
      checkPositiveInteger(options.backgroundFetches, 'backgroundFetches');
    if (options.token !== undefined && (options.token === '' || /[\r\n]/.test(options.token)))
      throw new TypeError('token must be a non-empty string without line breaks');
    return new HttpChunkSource(base, options);
  }

  fetchChunk(digestHex: string, signal?: AbortSignal, hints?: FetchHints): Promise<Uint8Array> {
    if (!isHexDigest(digestHex)) {
      return Promise.reject(new ReaderError('ERR_LR_DIGEST_INVALID', `invalid chunk digest "${digestHex}"`));
    }
    const path = `/chunks/${digestHex}`;
    const kind = {
      notFoundCode: 'ERR_LR_CHUNK_MISSING',
      maxBytes: MAX_HTTP_CHUNK_BYTES,
      what: `chunk ${digestHex}`,
    };
    if (hints === undefined || hints.urgent) return this.#whole(path, kind, signal);
    return this.#background(path, kind, signal, hints);
  }

  /** One GET (of the rest of `piece` when given) that background fetches make way for. */
  async #urgent(
    path: string,
    kind: RequestKind,
    signal: AbortSignal | undefined,
    piece: Piece | undefined,
  ): Promise<Uint8Array | undefined> {
    if (this.#urgentFetches++ === 0) {
      for (const request of this.#yielding) request.abort();
    }
    try {
      return await this.#get(path, kind, signal, piece, undefined);
    } finally {
      if (--this.#urgentFetches === 0) {
        for (const wake of [...this.#linkWaiters]) wake();
      }
    }
  }

  /** A blob fetched in a lane, only while no urgent fetch is in flight, resumed where it was cut. */
  async #background(
    path: string,
    kind: RequestKind,
    signal: AbortSignal | undefined,
    hints: FetchHints,
  ): Promise<Uint8Array> {
    const stop = linkedController([signal, this.#closing.signal]);
    try {
      await this.#lanes.acquire(stop.signal).catch(() => {
        throw this.#stopError(signal);
      });
      try {
        const piece: Piece = { start: 0, blob: undefined };
        for (;;) {
          if (piece.blob !== undefined && piece.start === piece.blob.byteLength) return piece.blob;
          if (hints.urgent) return (await this.#urgent(path, kind, signal, piece)) ?? piece.blob!;
          await this.#linkIdle(stop.signal).catch(() => {
            throw this.#stopError(signal);
          });
          const yieldTo = new AbortController();
          this.#yielding.add(yieldTo);
          try {
            return (await this.#get(path, kind, signal, piece, yieldTo.signal)) ?? piece.blob!;
          } catch (err) {
            if (err !== YIELDED) throw err;
          } finally {
            this.#yielding.delete(yieldTo);
          }
        }
      } finally {
        this.#lanes.release();
      }
    } finally {
      stop.dispose();
    }
  }

  /** Resolves once no urgent fetch is in flight. */
  #linkIdle(signal: AbortSignal): Promise<void> {
    if (this.#urgentFetches === 0) return Promise.resolve();
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        this.#linkWaiters.delete(wake);
        unregister();
        resolve();
      };
      const unregister = onAbort(signal, () => {
        this.#linkWaiters.delete(wake);
        reject(signal.reason);
      });
      this.#linkWaiters.add(wake);
    });
  }

  async listSnapshots(scope: NamespaceScope = {}, signal?: AbortSignal): Promise<SnapshotRef[]> {
    const body = await this.#whole(
      `/snapshots${listingQuery(scope)}`,
      {
        notFoundCode: 'ERR_LR_SOURCE_BAD_RESPONSE',
        maxBytes: MAX_HTTP_LISTING_BYTES,
        what: 'the snapshot list',
      },
      signal,
    );
    return parseListing(body, this.name, scope);
  }

  /**
   * The namespaces the server has below `scope.namespace` (all levels by default). A server
   * from before namespaces has no `/namespaces`: it answers 404, read as only the root.
   */
  async listNamespaces(scope: NamespaceScope = {}, signal?: AbortSignal): Promise<string[]> {
    const full = { ...scope, maxDepth: scope.maxDepth ?? MAX_NAMESPACE_DEPTH };
    let body: Uint8Array;
    try {
      body = await this.#whole(
        `/namespaces${listingQuery(full)}`,
        {
          notFoundCode: 'ERR_LR_HTTP_NOT_FOUND',
          maxBytes: MAX_HTTP_LISTING_BYTES,
          what: 'the namespace list',
        },
        signal,
      );
    } catch (err) {
      const root = (scope.namespace ?? ROOT_NAMESPACE) === ROOT_NAMESPACE;
      if (root && err instanceof LiverestoreError && err.code === 'ERR_LR_HTTP_NOT_FOUND')
        return [ROOT_NAMESPACE];
      throw err;
    }
    return parseNamespaceListing(body, this.name, full);
  }

  async resolveSnapshot(spec: SnapshotSpec): Promise<SnapshotRef> {
    const namespace = namespaceOf(spec);
    const times = (await this.listSnapshots({ namespace }))
      .filter((ref) => ref.type === spec.type && ref.id === spec.id)
      .map((ref) => ref.time);
    const time = spec.time ?? (times.length === 0 ? undefined : Math.max(...times));
    if (time === undefined || !times.includes(time)) {
      const what = spec.time === undefined ? formatGroup(spec) : formatSnapshot({ ...spec, time: spec.time });
      throw new ReaderError(
        'ERR_LR_SNAPSHOT_NOT_FOUND',
        `no snapshot ${what} in ${describeNamespace(namespace)} at ${this.name}`,
      );
    }
    return inNamespace({ type: spec.type, id: spec.id, time }, namespace);
  }

  readSnapshotFile(ref: SnapshotRef, filename: string, signal?: AbortSignal): Promise<Uint8Array> {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(filename)) {
      return Promise.reject(
        new ReaderError('ERR_LR_SNAPSHOT_FILE_NOT_FOUND', `invalid snapshot file name "${filename}"`),
      );
    }
    return this.#whole(
      snapshotFilePath(ref, filename),
      {
        notFoundCode: 'ERR_LR_SNAPSHOT_FILE_NOT_FOUND',
        maxBytes: MAX_HTTP_SNAPSHOT_FILE_BYTES,
        what: `file ${filename} of snapshot ${formatSnapshot(ref)}`,
      },
      signal,
    );
  }

  /** Stops every request in flight and closes the pool's sockets. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(closedError(this.name));
    await this.#pool.destroy();
  }

  /** A whole body, urgently (a reader waits for it). */
  async #whole(path: string, kind: RequestKind, signal: AbortSignal | undefined): Promise<Uint8Array> {
    return (await this.#urgent(path, kind, signal, undefined))!;
  }

  /**
   * GET with retries: the body, or the first permanent error, or ERR_LR_SOURCE_UNAVAILABLE.
   * With `piece`, asks for the rest of the blob from `piece.start` and writes it into
   * `piece.blob` (returning undefined), unless the server answers with the whole body
   * (returned). When `yieldTo` fires, stops and throws {@link YIELDED}.
   */
  async #get(
    path: string,
    kind: RequestKind,
    signal: AbortSignal | undefined,
    piece: Piece | undefined,
    yieldTo: AbortSignal | undefined,
  ): Promise<Uint8Array | undefined> {
    const url = `${this.name}${path}`;
    const attempts = this.#retries + 1;
    // One signal for the caller and for close(), so a wait, a sleep or a request stops on either.
    const stop = linkedController([signal, this.#closing.signal, yieldTo]);
    let last: unknown;
    try {
      for (let attempt = 1; attempt <= attempts; attempt++) {
        try {
          await this.#slots.acquire(stop.signal);
        } catch {
          throw this.#stopError(signal, yieldTo);
        }
        try {
          return await this.#attempt(this.#prefix + path, url, kind, stop.signal, piece);
        } catch (err) {
          if (stop.signal.aborted) throw this.#stopError(signal, yieldTo);
          if (err instanceof LiverestoreError && !isRetryable(err)) throw err;
          if (!isRetryable(err)) {
            // Not transient and not ours (a TLS failure, a malformed answer): fail now, with a code.
            throw new ReaderError(
              'ERR_LR_SOURCE_UNAVAILABLE',
              `${kind.what} from ${this.name}: GET ${url} failed (not retried) with ${describe(err)}`,
              { cause: err },
            );
          }
          last = err;
        } finally {
          this.#slots.release();
        }
        if (attempt < attempts) {
          const ceiling = Math.min(HTTP_BACKOFF_CAP_MS, HTTP_BACKOFF_BASE_MS * 2 ** (attempt - 1));
          try {
            // "Equal jitter": at least half the ceiling, so the waits of one request add up to
            // a real outage budget (≈ 8 s with 8 retries) while clients still spread out.
            await sleep(ceiling / 2 + (Math.random() * ceiling) / 2, stop.signal);
          } catch {
            throw this.#stopError(signal, yieldTo);
          }
        }
      }
    } finally {
      stop.dispose();
    }
    throw new ReaderError(
      'ERR_LR_SOURCE_UNAVAILABLE',
      `${kind.what} from ${this.name}: ${attempts} attempt${attempts === 1 ? '' : 's'} failed, the last with ${describe(last)}`,
      { cause: last },
    );
  }

  /** Why a request stopped early: the caller's abort, the source's close, or making way. */
  #stopError(signal: AbortSignal | undefined, yieldTo?: AbortSignal): Error {
    if (signal?.aborted === true) return abortError(signal);
    if (this.#closed || yieldTo?.aborted !== true) return closedError(this.name);
    return YIELDED;
  }

  /**
   * One request with its own deadline over headers and body. It runs only once a
   * connection is free (see #slots), so time queued behind other fetches never counts.
   */
  async #attempt(
    path: string,
    url: string,
    kind: RequestKind,
    stop: AbortSignal,
    piece: Piece | undefined,
  ): Promise<Uint8Array | undefined> {
    const deadline = linkedController([stop]);
    const timer = setTimeout(
      () =>
        deadline.abort(
          new ReaderError(
            'ERR_LR_SOURCE_TIMEOUT',
            `GET ${url} got no complete answer within ${this.#timeoutMs} ms`,
          ),
        ),
      this.#timeoutMs,
    );
    const requestSignal = deadline.signal;
    try {
      const response = await this.#pool.request({
        method: 'GET',
        path,
        signal: requestSignal,
        headers: {
          accept: '*/*',
          ...(this.#authorization === undefined ? {} : { authorization: this.#authorization }),
          ...(piece === undefined ? {} : { range: `bytes=${piece.start}-` }),
        },
      });
      const { statusCode, body } = response;
      if (statusCode === 206 && piece !== undefined) {
        await readPiece(response, piece, kind, url);
        return undefined;
      }
      if (statusCode >= 200 && statusCode < 300 && statusCode !== 206) {
        const length = Number(response.headers['content-length']);
        if (Number.isFinite(length) && length > kind.maxBytes) {
          body.destroy();
          throw tooLarge(kind, url, length);
        }
        if (Number.isSafeInteger(length) && length >= 0) {
          // One array of the announced size, filled as parts arrive: one copy, one blob in memory.
          const blob = new Uint8Array(length);
          await fillBody(body, blob, { start: 0 }, 'Content-Length', kind, url);
          return blob;
        }
        return await readBounded(body, kind.maxBytes, () => tooLarge(kind, url, undefined));
      }
      const text = await readErrorBody(body);
      if (statusCode >= 500) {
        throw new ReaderError(
          'ERR_LR_SOURCE_HTTP_5XX',
          `HTTP ${statusCode} from GET ${url}${serverDetail(text)}`,
        );
      }
      if (statusCode === 401 || statusCode === 403) {
        throw new ReaderError(
          'ERR_LR_UNAUTHORIZED',
          `${this.name} refused ${kind.what} (HTTP ${statusCode}): ${this.#authorization === undefined ? 'a token is required' : 'the token was not accepted'}`,
        );
      }
      const served = serverError(text);
      const code = served?.code ?? (statusCode === 404 ? kind.notFoundCode : 'ERR_LR_SOURCE_REQUEST_REFUSED');
      throw new ReaderError(
        code,
        `${kind.what} from ${this.name}: ${served?.message ?? `HTTP ${statusCode}`} (HTTP ${statusCode})`,
      );
    } catch (err) {
      // The deadline fired: report the timeout, not undici's generic abort.
      if (deadline.signal.aborted && !stop.aborted) throw deadline.signal.reason;
      throw err;
    } finally {
      clearTimeout(timer);
      deadline.dispose();
    }
  }
}

/** An AbortController that also aborts (with the same reason) when any of `parents` does. */
function linkedController(parents: readonly (AbortSignal | undefined)[]): {
  readonly signal: AbortSignal;
  abort(reason: unknown): void;
  dispose(): void;
} {
  const controller = new AbortController();
  const unlink: (() => void)[] = [];
  for (const parent of parents) {
    if (parent === undefined) continue;
    if (parent.aborted) {
      controller.abort(parent.reason);
      break;
    }
    unlink.push(onAbort(parent, () => controller.abort(parent.reason)));
  }
  return {
    signal: controller.signal,
    abort: (reason) => controller.abort(reason),
    // Long-lived parents (the source's close signal) must not collect a listener per request.
    dispose: () => {
      for (const fn of unlink.splice(0)) fn();
    },
  };
}

/** A FIFO counting semaphore whose waits can be aborted. */
class Semaphore {
  #free: number;
  readonly #waiters: { resolve(): void }[] = [];

  constructor(permits: number) {
    this.#free = permits;
  }

  acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#free > 0 && this.#waiters.length === 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          unregister();
          resolve();
        },
      };
      const unregister = onAbort(signal, () => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(signal.reason);
      });
      this.#waiters.push(waiter);
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next === undefined) this.#free++;
    else next.resolve();
  }
}

function closedError(name: string): ReaderError {
  return new ReaderError('ERR_LR_SOURCE_CLOSED', `the HTTP source ${name} is closed`);
}

function tooLarge(kind: RequestKind, url: string, length: number | undefined): ReaderError {
  return new ReaderError(
    'ERR_LR_SOURCE_RESPONSE_TOO_LARGE',
    `GET ${url}: ${kind.what} is ${length === undefined ? 'larger than' : `${length} bytes, over`} the limit of ${kind.maxBytes} bytes`,
  );
}

/** A background fetch stopped to make way for an urgent one (internal; never reaches a caller). */
const YIELDED = new Error('the request made way for an urgent fetch');

/** A blob fetched with `Range` and possibly resumed: what has arrived so far. */
interface Piece {
  /** First byte not received yet: where the next request starts. */
  start: number;
  /** The whole blob, allocated once the first answer names its size. */
  blob: Uint8Array | undefined;
}

/**
 * Checks a 206 answer to `Range: bytes=START-` (`Content-Range: bytes START-LAST/TOTAL`
 * up to the end of the blob, the same TOTAL every time) and copies its body into the
 * blob, advancing `piece.start` as bytes arrive, so a cut answer is resumed, not refetched.
 */
async function readPiece(
  response: {
    headers: Record<string, string | string[] | undefined>;
    body: AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown };
  },
  piece: Piece,
  kind: RequestKind,
  url: string,
): Promise<void> {
  const { body } = response;
  const header = response.headers['content-range'];
  const match = typeof header === 'string' ? /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header) : null;
  const [first, last, total] = (match?.slice(1) ?? []).map(Number);
  const bad = (why: string): ReaderError => badBody(body, kind, url, why);
  if (first !== piece.start || total === undefined || !Number.isSafeInteger(total) || last !== total - 1)
    throw bad(`the answer to "Range: bytes=${piece.start}-" has Content-Range "${String(header)}"`);
  if (total > kind.maxBytes) throw bad(`${total} bytes, over the limit of ${kind.maxBytes} bytes`);
  if (piece.blob !== undefined && piece.blob.byteLength !== total)
    throw bad('its size changed between requests');
  piece.blob ??= new Uint8Array(total);
  await fillBody(body, piece.blob, piece, 'Content-Range', kind, url);
}

/**
 * Copies a body into `blob` from `cursor.start` to the blob's end, advancing the cursor as
 * bytes arrive (a cut answer leaves it where the next request resumes); a body that does
 * not end exactly there fails with ERR_LR_SOURCE_BAD_RESPONSE, naming `header`.
 */
async function fillBody(
  body: AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown },
  blob: Uint8Array,
  cursor: { start: number },
  header: 'Content-Length' | 'Content-Range',
  kind: RequestKind,
  url: string,
): Promise<void> {
  for await (const part of body) {
    // undici checks Content-Length too; never write past the array either way.
    if (cursor.start + part.byteLength > blob.byteLength)
      throw badBody(body, kind, url, `the body is longer than its ${header}`);
    blob.set(part, cursor.start);
    cursor.start += part.byteLength;
  }
  if (cursor.start !== blob.byteLength)
    throw badBody(body, kind, url, `the body is shorter than its ${header}`);
}

/** ERR_LR_SOURCE_BAD_RESPONSE for an answer that is not what was asked for; the body is dropped. */
function badBody(
  body: { destroy(err?: Error): unknown },
  kind: RequestKind,
  url: string,
  why: string,
): ReaderError {
  const err = new ReaderError('ERR_LR_SOURCE_BAD_RESPONSE', `GET ${url}: ${kind.what}: ${why}`);
  body.destroy(err);
  return err;
}

/** Collects a body without a Content-Length into one fresh array, failing as soon as it passes `maxBytes`. */
async function readBounded(
  body: AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown },
  maxBytes: number,
  onTooLarge: () => Error,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of body) {
    total += part.byteLength;
    if (total > maxBytes) {
      const err = onTooLarge();
      body.destroy(err);
      throw err;
    }
    parts.push(part);
  }
  // A fresh array, never a view into a pooled Buffer: the caller may transfer it.
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** The first bytes of an error body as text; the rest is discarded. */
async function readErrorBody(
  body: AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown },
): Promise<string> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of body) {
    parts.push(part);
    total += part.byteLength;
    if (total >= MAX_ERROR_BODY_BYTES) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(parts).subarray(0, MAX_ERROR_BODY_BYTES).toString('utf8');
}

/** `{ error: { code, message } }` of the server, if the body is that and the code looks like ours. */
function serverError(text: string): { code: string | undefined; message: string | undefined } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const error = (parsed as { error?: unknown } | null)?.error;
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return {
    code: typeof code === 'string' && /^ERR_LR_[A-Z0-9_]{1,64}$/.test(code) ? code : undefined,
    message: typeof message === 'string' ? message.slice(0, 1000) : undefined,
  };
}

function serverDetail(text: string): string {
  const served = serverError(text);
  if (served === undefined) return '';
  return `: ${[served.code, served.message].filter((s) => s !== undefined).join(': ')}`;
}
