import { LiverestoreError } from '@liverestore/format';
import {
  type BodyMemory,
  type BodySink,
  type Clock,
  describeError,
  Http1Client,
  isTransientError as isTransientNetworkError,
  linkedController,
  Semaphore,
  sinkText,
  sleep,
  systemClock,
} from '@liverestore/format/internal';
import { abortError, ReaderError } from './errors.js';
import { answerBody, answerSink, type ExpectedBody } from './http-body.js';
import type { BlobPiece } from './link-scheduler.js';
import { certificateErrorCode, http1Tls, type TlsTrust, untrustedCertificateError } from './tls-trust.js';

/*
 * One HTTP(S) origin as a request primitive: GET with a deadline per attempt (headers and
 * body), retried with exponential backoff and equal jitter when the failure is transient
 * (connection failures, timeouts, 5xx), never when it is permanent (4xx, TLS, a malformed
 * answer). Requests share one keep-alive pool and wait for a free connection before their
 * deadline starts. Like undici's RetryHandler, it knows nothing of what is fetched or who
 * goes first: the link scheduler decides that, the sources say what a path means.
 */

/** First backoff step: the n-th retry sleeps a random time in [c/2, c) with c = min(cap, base·2ⁿ⁻¹) (equal jitter). */
export const HTTP_BACKOFF_BASE_MS = 100;
/** Longest backoff sleep: a restarting server is polled at least this often. */
export const HTTP_BACKOFF_CAP_MS = 2_000;

/** What a request expects back, for error codes and bounds. */
export interface RequestKind extends ExpectedBody {
  /** Code of a 404 whose body names none (or an unusable one). */
  readonly notFoundCode: string;
}

/** A server's own description of a failure, read from an error body. */
export interface ServerError {
  /** An `ERR_LR_*` code the failure is reported with, if the server named one worth trusting. */
  readonly code: string | undefined;
  readonly message: string | undefined;
}

/** Options of {@link HttpTransport}. */
export interface HttpTransportOptions {
  /** Deadline of one attempt, headers and body together. */
  readonly timeoutMs: number;
  /** Attempts after the first for transient failures. */
  readonly retries: number;
  /** Keep-alive connections: requests on the wire at most. */
  readonly connections: number;
  /** Which certificates an https:// origin may show (tls-trust.ts). */
  readonly tls?: TlsTrust | undefined;
  /**
   * Told before each retry's backoff sleep (a server that does not answer, a 5xx): what
   * failed and when the next attempt comes, so a command can say so instead of waiting in
   * silence.
   */
  readonly onRetry?: ((event: RetryEvent) => void) | undefined;
  /**
   * Headers of one request besides `accept` and `range` (both given in `headers`), computed
   * per attempt: the HTTP chunk source sends its bearer token, an S3 source signs here.
   */
  readonly requestHeaders?:
    | ((request: { path: string; headers: Record<string, string> }) => Record<string, string>)
    | undefined;
  /** What a 401 or 403 answer means for the user: `a token is required`. */
  readonly refusalHint: string;
  /**
   * Reads an error body (at most 64 KiB of text). Default: liverestore's JSON
   * `{ error: { code, message } }`. An S3 source parses its XML `<Error>` here (and
   * returns no code, so 404 becomes the request's `notFoundCode`).
   */
  readonly parseErrorBody?: ((text: string) => ServerError | undefined) | undefined;
  /** Times the attempt deadlines and backoff sleeps (default the real clock); tests drive a fake one. */
  readonly clock?: Clock | undefined;
  /** Uniform in [0, 1): the backoff jitter (default Math.random). */
  readonly random?: (() => number) | undefined;
}

/** A failed attempt that will be retried. */
export interface RetryEvent {
  /** The origin (and path prefix) of the source. */
  readonly source: string;
  readonly url: string;
  /** The attempt that failed, from 1, and how many there are in all. */
  readonly attempt: number;
  readonly attempts: number;
  /** How long until the next attempt. */
  readonly delayMs: number;
  /** What failed, one line. */
  readonly error: string;
}

/** What a request is given besides its path: the caller's signal, a piece to resume, a yield signal. */
export interface TransportRequestOptions {
  readonly signal?: AbortSignal | undefined;
  /** Ask only for the rest of this blob (`Range: bytes=START-`) and write it there. */
  readonly piece?: BlobPiece | undefined;
  /** When it fires the request stops and rejects with its reason (see LinkScheduler). */
  readonly yieldTo?: AbortSignal | undefined;
  /** Memory for a blob's body (a whole one, or a piece's once its size is known); default fresh. */
  readonly memory?: BodyMemory | undefined;
}

/** True for a failure another attempt may not see (network, timeout, 5xx); false for a permanent one. */
export function isTransientError(err: unknown): boolean {
  return isTransientNetworkError(err);
}

/**
 * GETs from one origin with deadlines and retries. To reuse it (an S3 source): construct
 * it with the endpoint URL (its path is the prefix of every request path), pass
 * `requestHeaders` to sign each attempt, `parseErrorBody` for the service's error format
 * and a `refusalHint`; call `get(path, kind, { signal, piece, yieldTo })` from the
 * {@link BlobRequest} you hand the LinkScheduler, and pass `closed` to the scheduler.
 * Errors: the first permanent failure as it is (`ERR_LR_*` from the answer), or
 * ERR_LR_SOURCE_UNAVAILABLE once the retries are spent; ERR_LR_SOURCE_CLOSED after close.
 */
export class HttpTransport {
  /** The base URL, without credentials: what logs and errors show. */
  readonly name: string;
  readonly #client: Http1Client;
  readonly #origin: URL;
  /** Path prefix of the server (`''` or `/some/prefix`), without a trailing slash. */
  readonly #prefix: string;
  readonly #options: HttpTransportOptions;
  /** Fires on close: every attempt and backoff sleep stops. */
  readonly #closing = new AbortController();
  /** Requests on the wire at most: one per pooled connection. */
  readonly #slots: Semaphore;

  constructor(base: URL, options: HttpTransportOptions) {
    this.#prefix = base.pathname.replace(/\/+$/, '');
    this.name = `${base.origin}${this.#prefix}`;
    this.#options = options;
    this.#slots = new Semaphore(options.connections);
    this.#origin = base;
    this.#client = new Http1Client(base.origin, {
      connections: options.connections,
      tls: http1Tls(options.tls),
    });
  }

  /** Fires (with ERR_LR_SOURCE_CLOSED as its reason) once {@link close} is called. */
  get closed(): AbortSignal {
    return this.#closing.signal;
  }

  /**
   * GET with retries: the body, or the first permanent error, or ERR_LR_SOURCE_UNAVAILABLE.
   * With `piece`, asks for the rest of the blob from `piece.start` and writes it into
   * `piece.blob` (returning undefined), unless the server answers with the whole body
   * (returned). When `yieldTo` fires, stops and throws its reason.
   */
  async get(
    path: string,
    kind: RequestKind,
    request: TransportRequestOptions = {},
  ): Promise<Uint8Array | undefined> {
    const { signal, piece, yieldTo, memory } = request;
    const url = `${this.name}${path}`;
    const attempts = this.#options.retries + 1;
    // One signal for the caller and for close(), so a wait, a sleep or a request stops on either.
    const stop = linkedController([signal, this.#closing.signal, yieldTo]);
    let last: unknown;
    try {
      for (let attempt = 1; attempt <= attempts; attempt++) {
        let releaseSlot: () => void;
        try {
          releaseSlot = await this.#slots.acquire(stop.signal);
        } catch {
          throw this.#stopError(signal, yieldTo);
        }
        try {
          return await this.#attempt(this.#prefix + path, url, kind, stop.signal, piece, memory);
        } catch (err) {
          if (stop.signal.aborted) throw this.#stopError(signal, yieldTo);
          if (err instanceof LiverestoreError && !isTransientError(err)) throw err;
          const certificate = certificateErrorCode(err);
          if (certificate !== undefined)
            throw await untrustedCertificateError(this.#origin, certificate, err);
          if (!isTransientError(err)) {
            // Not transient and not ours (a TLS failure, a malformed answer): fail now, with a code.
            throw new ReaderError(
              'ERR_LR_SOURCE_UNAVAILABLE',
              `${kind.what} from ${this.name}: GET ${url} failed (not retried) with ${describeError(err)}`,
              { cause: err },
            );
          }
          last = err;
        } finally {
          releaseSlot();
        }
        if (attempt < attempts) {
          const ceiling = Math.min(HTTP_BACKOFF_CAP_MS, HTTP_BACKOFF_BASE_MS * 2 ** (attempt - 1));
          // "Equal jitter": at least half the ceiling, so the waits of one request add up to
          // a real outage budget (≈ 8 s with 8 retries) while clients still spread out.
          const random = this.#options.random ?? Math.random;
          const delayMs = ceiling / 2 + (random() * ceiling) / 2;
          this.#options.onRetry?.({
            source: this.name,
            url,
            attempt,
            attempts,
            delayMs,
            error: describeError(last),
          });
          try {
            await sleep(delayMs, stop.signal, this.#options.clock);
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
      `${kind.what} from ${this.name}: ${attempts} attempt${attempts === 1 ? '' : 's'} failed, the last with ${describeError(last)}`,
      { cause: last },
    );
  }

  /** Stops every request in flight and closes the pool's sockets. */
  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort(closedError(this.name));
    this.#client.close(closedError(this.name));
  }

  /** Why a request stopped early: the caller's abort, the source's close, or making way. */
  #stopError(signal: AbortSignal | undefined, yieldTo: AbortSignal | undefined): unknown {
    if (signal?.aborted === true) return abortError(signal);
    if (this.#closing.signal.aborted || yieldTo?.aborted !== true) return closedError(this.name);
    return yieldTo.reason;
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
    piece: BlobPiece | undefined,
    memory: BodyMemory | undefined,
  ): Promise<Uint8Array | undefined> {
    const { timeoutMs } = this.#options;
    const deadline = linkedController([stop]);
    const cancelDeadline = (this.#options.clock ?? systemClock).setTimer(
      () =>
        deadline.abort(
          new ReaderError(
            'ERR_LR_SOURCE_TIMEOUT',
            `GET ${url} got no complete answer within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
    try {
      const headers: Record<string, string> = {
        accept: '*/*',
        ...(piece === undefined ? {} : { range: `bytes=${piece.start}-` }),
      };
      let sink: BodySink | undefined;
      const answer = await this.#client.request({
        method: 'GET',
        path,
        signal: deadline.signal,
        headers: { ...headers, ...this.#options.requestHeaders?.({ path, headers }) },
        onHead: (head) => {
          sink = answerSink(head, piece, kind, url, memory);
          return sink;
        },
      });
      const { status } = answer.head;
      switch (answerBody(status, piece)) {
        case 'piece':
          return undefined;
        case 'whole':
          return sink?.kind === 'into' ? sink.target : answer.collected!;
        default:
          throw this.#refusal(status, sinkText(answer.collected), kind, url);
      }
    } catch (err) {
      // The deadline fired: report the timeout, not the abort it made.
      if (deadline.signal.aborted && !stop.aborted) throw deadline.signal.reason;
      throw err;
    } finally {
      cancelDeadline();
      deadline.dispose();
    }
  }

  /** The error of a non-2xx answer: 5xx transient, 401/403 unauthorized, else the server's code or the kind's. */
  #refusal(statusCode: number, text: string, kind: RequestKind, url: string): ReaderError {
    const served = (this.#options.parseErrorBody ?? liverestoreErrorBody)(text);
    if (statusCode >= 500) {
      const detail =
        served === undefined
          ? ''
          : `: ${[served.code, served.message].filter((s) => s !== undefined).join(': ')}`;
      return new ReaderError('ERR_LR_SOURCE_HTTP_5XX', `HTTP ${statusCode} from GET ${url}${detail}`);
    }
    if (statusCode === 401 || statusCode === 403) {
      return new ReaderError(
        'ERR_LR_UNAUTHORIZED',
        `${this.name} refused ${kind.what} (HTTP ${statusCode}): ${this.#options.refusalHint}`,
      );
    }
    const code = served?.code ?? (statusCode === 404 ? kind.notFoundCode : 'ERR_LR_SOURCE_REQUEST_REFUSED');
    return new ReaderError(
      code,
      `${kind.what} from ${this.name}: ${served?.message ?? `HTTP ${statusCode}`} (HTTP ${statusCode})`,
    );
  }
}

function closedError(name: string): ReaderError {
  return new ReaderError('ERR_LR_SOURCE_CLOSED', `the HTTP source ${name} is closed`);
}

/** `{ error: { code, message } }` of a liverestore server, if the body is that and the code looks like ours. */
export function liverestoreErrorBody(text: string): ServerError | undefined {
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
