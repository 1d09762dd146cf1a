import { createHash } from 'node:crypto';
import { LiverestoreError } from '@liverestore/format';
import {
  type BodyMemory,
  type BodySink,
  type Clock,
  Http1Client,
  sinkText,
  sleep,
  systemClock,
  textSink,
} from '@liverestore/format/internal';
import { boundedSink, errorSink, pieceBodySink } from './s3-body.js';
import { S3Error } from './s3-error.js';
import { answerError, requestOrigin, type S3Request, type S3Response, signedRequest } from './s3-request.js';
import {
  abortReason,
  DELETE_BATCH,
  describe,
  isRetryable,
  MAX_ERROR_BODY_BYTES,
  MAX_XML_BYTES,
} from './s3-retry.js';
import type { S3Settings } from './s3-settings.js';
import { escapeXml, type ListPage, parseDeleteErrors, parseListPage } from './s3-xml.js';

/*
 * A small S3 client: the six calls a datastore needs (GET with Range, HEAD, PUT with
 * If-None-Match, ListObjectsV2 with paging, DeleteObjects, and bucket checks), each a
 * SigV4-signed request (s3-request.ts: addressing, signing, what a refusal means) over one
 * pool of keep-alive HTTP/1.1 connections (format's Http1Client: a chunk object's body is
 * read by the kernel straight into its blob).
 *
 * Every request has a deadline per attempt (headers and body). Connection failures,
 * timeouts, 5xx (503 SlowDown included) and the 4xx answers S3 says to retry are retried
 * with exponential backoff and equal jitter; other 4xx never. When the attempts run out
 * the request fails with `ERR_LR_SOURCE_UNAVAILABLE`, its cause the last failure. Bodies
 * are bounded and read into fresh arrays the caller owns.
 */

/** A byte range of an object: `start`…`end` inclusive, or the last `suffixBytes`. */
export type S3Range = { readonly start: number; readonly end?: number } | { readonly suffixBytes: number };

/** Counters of one client, for tests and benchmarks. */
export interface S3ClientStats {
  /** Requests sent, retries included. */
  attempts: number;
  /** Attempts that failed and were tried again. */
  retries: number;
}

/** An object read in parts (see {@link S3Client.readInto}): where the next part starts, and the bytes so far. */
export interface ObjectPiece {
  start: number;
  blob: Uint8Array | undefined;
}

/** An S3 client bound to one bucket. */
export class S3Client {
  readonly #http: Http1Client;
  readonly #closing = new AbortController();
  readonly #clock: Clock;
  readonly stats: S3ClientStats = { attempts: 0, retries: 0 };

  /** `clock` times the per-attempt deadline and the backoff (tests drive a fake one). */
  constructor(
    readonly bucket: string,
    readonly settings: S3Settings,
    options: { clock?: Clock } = {},
  ) {
    this.#clock = options.clock ?? systemClock;
    this.#http = new Http1Client(requestOrigin(bucket, settings), { connections: settings.connections });
  }

  /** `endpoint/bucket` or `bucket.endpoint`: for messages. */
  get name(): string {
    const { endpoint, pathStyle } = this.settings;
    return pathStyle
      ? `${endpoint.origin}/${this.bucket}`
      : `${endpoint.protocol}//${this.bucket}.${endpoint.host}`;
  }

  /** An object's bytes (or a range of them); `ERR_LR_S3_NOT_FOUND` when there is no such key. */
  async getObject(
    key: string,
    options: {
      range?: S3Range;
      maxBytes: number;
      signal?: AbortSignal | undefined;
      /** Memory for the body (default a fresh array). */
      memory?: BodyMemory | undefined;
    },
  ): Promise<Uint8Array> {
    const { range } = options;
    const headers: Record<string, string> = {};
    if (range !== undefined) {
      headers.range =
        'suffixBytes' in range ? `bytes=-${range.suffixBytes}` : `bytes=${range.start}-${range.end ?? ''}`;
    }
    const response = await this.#send({
      method: 'GET',
      key,
      headers,
      maxBytes: options.maxBytes,
      signal: options.signal,
      memory: options.memory,
    });
    if (range !== undefined && response.status !== 206) {
      throw new S3Error(
        'ERR_LR_S3_BAD_RESPONSE',
        `GET ${key}: asked for a range, got status ${response.status}`,
        {
          status: response.status,
        },
      );
    }
    return response.body;
  }

  /**
   * Reads the rest of an object, from `piece.start`, into `piece.blob` (allocated from the
   * size the first answer names), advancing `piece.start` as bytes arrive: a retry, or a
   * later call after an abort, asks only for what is missing (`Range: bytes=START-`).
   */
  async readInto(
    key: string,
    piece: ObjectPiece,
    options: { maxBytes: number; signal?: AbortSignal | undefined; memory?: BodyMemory | undefined },
  ): Promise<void> {
    await this.#send({
      method: 'GET',
      key,
      headers: () => ({ range: `bytes=${piece.start}-` }),
      maxBytes: options.maxBytes,
      signal: options.signal,
      sink: (head) => pieceBodySink(head, piece, options.maxBytes, key, options.memory),
    });
  }

  /** Size of an object, or undefined when there is none. */
  async headObject(key: string, signal?: AbortSignal): Promise<{ sizeBytes: number } | undefined> {
    const response = await this.#send({ method: 'HEAD', key, maxBytes: 0, accept: [404], signal });
    if (response.status === 404) return undefined;
    return { sizeBytes: Number(response.headers['content-length'] ?? Number.NaN) };
  }

  /**
   * Stores an object. With `ifAbsent` the PUT carries `If-None-Match: *`: an object that is
   * already there is kept and the answer is `'exists'` (S3's 412), never an overwrite.
   */
  async putObject(
    key: string,
    body: Uint8Array,
    options: { ifAbsent?: boolean; signal?: AbortSignal | undefined } = {},
  ): Promise<'created' | 'exists'> {
    const response = await this.#send({
      method: 'PUT',
      key,
      body,
      headers: {
        'content-type': 'application/octet-stream',
        ...(options.ifAbsent === true ? { 'if-none-match': '*' } : {}),
      },
      maxBytes: MAX_ERROR_BODY_BYTES,
      accept: options.ifAbsent === true ? [412] : [],
      signal: options.signal,
    });
    return response.status === 412 ? 'exists' : 'created';
  }

  /** Every page of ListObjectsV2 under `prefix` (following continuation tokens). */
  async *listPages(
    prefix: string,
    options: { delimiter?: string; maxKeys?: number; signal?: AbortSignal | undefined } = {},
  ): AsyncGenerator<ListPage> {
    let token: string | undefined;
    do {
      const query: Record<string, string> = { 'list-type': '2', prefix };
      if (options.delimiter !== undefined) query.delimiter = options.delimiter;
      if (options.maxKeys !== undefined) query['max-keys'] = String(options.maxKeys);
      if (token !== undefined) query['continuation-token'] = token;
      const response = await this.#send({
        method: 'GET',
        query,
        maxBytes: MAX_XML_BYTES,
        signal: options.signal,
      });
      const page = parseListPage(Buffer.from(response.body).toString('utf8'));
      if (page === undefined)
        throw new S3Error(
          'ERR_LR_S3_BAD_RESPONSE',
          `listing ${prefix} of ${this.name}: not a ListBucketResult`,
        );
      yield page;
      token = page.continuationToken;
    } while (token !== undefined);
  }

  /** All keys and common prefixes under `prefix`, every page read. */
  async list(
    prefix: string,
    options: { delimiter?: string; maxKeys?: number; signal?: AbortSignal | undefined } = {},
  ): Promise<{ keys: string[]; commonPrefixes: string[] }> {
    const keys: string[] = [];
    const commonPrefixes: string[] = [];
    for await (const page of this.listPages(prefix, options)) {
      for (const entry of page.keys) keys.push(entry.key);
      commonPrefixes.push(...page.commonPrefixes);
    }
    return { keys, commonPrefixes };
  }

  /** Deletes objects (a missing one is no error), in batches of 1000. */
  async deleteObjects(keys: readonly string[], signal?: AbortSignal): Promise<void> {
    for (let at = 0; at < keys.length; at += DELETE_BATCH) {
      const batch = keys.slice(at, at + DELETE_BATCH);
      const xml = `<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>${batch
        .map((key) => `<Object><Key>${escapeXml(key)}</Key></Object>`)
        .join('')}</Delete>`;
      const body = Buffer.from(xml, 'utf8');
      const response = await this.#send({
        method: 'POST',
        query: { delete: '' },
        body,
        headers: {
          'content-type': 'application/xml',
          'content-md5': createHash('md5').update(body).digest('base64'),
        },
        maxBytes: MAX_XML_BYTES,
        signal,
      });
      const failed = parseDeleteErrors(Buffer.from(response.body).toString('utf8'));
      if (failed.length > 0) {
        throw new S3Error(
          'ERR_LR_S3_REQUEST_FAILED',
          `could not delete ${failed.length} object(s) from ${this.name}, first ${failed[0]!.key}: ${failed[0]!.code}`,
        );
      }
    }
  }

  /** Creates the bucket; one that exists and is ours already is fine. */
  async createBucket(signal?: AbortSignal): Promise<void> {
    try {
      await this.#send({ method: 'PUT', maxBytes: MAX_ERROR_BODY_BYTES, signal });
    } catch (err) {
      if (err instanceof S3Error && err.s3Code === 'BucketAlreadyOwnedByYou') return;
      throw err;
    }
  }

  /** Checks that the bucket exists and the credentials reach it (`ERR_LR_S3_BUCKET_NOT_FOUND`, `ERR_LR_S3_ACCESS_DENIED`). */
  async checkBucket(signal?: AbortSignal): Promise<void> {
    const response = await this.#send({ method: 'HEAD', maxBytes: 0, accept: [404], signal });
    if (response.status === 404)
      throw new S3Error(
        'ERR_LR_S3_BUCKET_NOT_FOUND',
        `bucket ${this.bucket} does not exist at ${this.settings.endpoint.origin}`,
        {
          status: 404,
        },
      );
  }

  /** Fires when the client closes (its reason is `ERR_LR_SOURCE_CLOSED`). */
  get closed(): AbortSignal {
    return this.#closing.signal;
  }

  /** Fails requests in flight with `ERR_LR_SOURCE_CLOSED` and closes the connections. */
  async close(): Promise<void> {
    const closed = new LiverestoreError('ERR_LR_SOURCE_CLOSED', `the S3 client of ${this.name} is closed`);
    this.#closing.abort(closed);
    this.#http.close(closed);
  }

  /** Sends `request`, retrying transient failures with backoff. */
  async #send(request: S3Request): Promise<S3Response> {
    const { retries, backoffBaseMs, backoffCapMs } = this.settings;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#attempt(request);
      } catch (err) {
        if (request.signal?.aborted) throw abortReason(request.signal);
        if (this.#closing.signal.aborted) throw abortReason(this.#closing.signal);
        if (!isRetryable(err)) throw err;
        if (attempt >= retries) {
          throw new S3Error(
            'ERR_LR_SOURCE_UNAVAILABLE',
            `S3 ${request.method} ${request.key ?? this.bucket} at ${this.name} failed after ${attempt + 1} attempt(s): ${describe(err)}`,
            { cause: err, status: (err as { status?: number }).status },
          );
        }
        this.stats.retries++;
        const ceiling = Math.min(backoffCapMs, backoffBaseMs * 2 ** attempt);
        const backoffMs = ceiling / 2 + Math.random() * (ceiling / 2);
        await sleep(backoffMs, request.signal, this.#clock).catch(() => {
          throw abortReason(request.signal!);
        });
      }
    }
  }

  /** One signed attempt under its deadline. */
  async #attempt(request: S3Request): Promise<S3Response> {
    const { path, headers: signedHeaders } = signedRequest(this.bucket, this.settings, request);
    const deadline = new AbortController();
    const cancelDeadline = this.#clock.setTimer(
      () =>
        deadline.abort(
          new S3Error(
            'ERR_LR_SOURCE_TIMEOUT',
            `S3 ${request.method} ${path} took over ${this.settings.timeoutMs} ms`,
          ),
        ),
      this.settings.timeoutMs,
    );
    const signal = AbortSignal.any([
      deadline.signal,
      this.#closing.signal,
      ...(request.signal === undefined ? [] : [request.signal]),
    ]);
    this.stats.attempts++;
    const succeeded = (status: number) =>
      (status >= 200 && status < 300) || request.accept?.includes(status) === true;
    try {
      let sink: BodySink | undefined;
      const answer = await this.#http.request({
        method: request.method,
        path,
        headers: signedHeaders,
        body: request.body,
        signal,
        onHead: (head) => {
          // A HEAD answer names a length but has no body.
          if (request.method === 'HEAD') sink = textSink(0);
          else if (!succeeded(head.status)) sink = errorSink();
          else sink = request.sink?.(head) ?? boundedSink(head, request.maxBytes, path, request.memory);
          return sink;
        },
      });
      const { status, headers } = answer.head;
      if (succeeded(status)) {
        const body = sink?.kind === 'into' && request.sink === undefined ? sink.target : answer.collected;
        return { status, headers, body: body ?? new Uint8Array(0) };
      }
      const text = sinkText(answer.collected);
      throw answerError(request, { path, status, text }, this.bucket, this.settings.endpoint.origin);
    } catch (err) {
      if (signal.aborted && signal.reason !== undefined) throw signal.reason;
      throw err;
    } finally {
      cancelDeadline();
    }
  }
}
