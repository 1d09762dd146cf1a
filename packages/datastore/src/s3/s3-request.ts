import type { BodyMemory, BodySink, Http1Head } from '@liverestore/format/internal';
import aws4 from 'aws4';
import { S3Error } from './s3-error.js';
import { encodeRfc3986, TRANSIENT_S3_CODES } from './s3-retry.js';
import type { S3Settings } from './s3-settings.js';
import { parseErrorBody } from './s3-xml.js';

/*
 * One S3 request as the client sends it: what a call asks for (S3Request), where it goes
 * (path-style or virtual-hosted bucket, RFC 3986 key and sorted query), its SigV4 signature
 * (the `aws4` signer), and what a refusal means (status and S3's `<Code>` → an S3Error).
 * The client (s3-client.ts) sends it under a deadline and retries it.
 */

/** One logical request (retried as a whole). */
export interface S3Request {
  readonly method: 'GET' | 'HEAD' | 'PUT' | 'POST';
  /** Object key; absent for a request on the bucket itself. */
  readonly key?: string;
  readonly query?: Readonly<Record<string, string>>;
  /** Headers, or a function giving them per attempt (a resumed Range starts where the last attempt stopped). */
  readonly headers?: Readonly<Record<string, string>> | (() => Readonly<Record<string, string>>);
  readonly body?: Uint8Array;
  /** Largest body accepted on success. */
  readonly maxBytes: number;
  /** Statuses that are answers rather than failures (412 of If-None-Match, 404 of HEAD). */
  readonly accept?: readonly number[];
  readonly signal?: AbortSignal | undefined;
  /** Where a successful answer's body goes, in place of one array of at most `maxBytes`. */
  readonly sink?: (head: Http1Head) => BodySink;
  /** Memory for a successful answer's body of known length (default a fresh array). */
  readonly memory?: BodyMemory | undefined;
}

/** What came back. */
export interface S3Response {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

/** Where every request of a client for `bucket` goes: the endpoint, or `bucket.endpoint` (virtual-hosted). */
export function requestOrigin(bucket: string, settings: S3Settings): string {
  const { endpoint, pathStyle } = settings;
  return `${endpoint.protocol}//${pathStyle ? endpoint.host : `${bucket}.${endpoint.host}`}`;
}

/** The URL parts of a request: host header, path with encoded key and query. */
function requestTarget(
  bucket: string,
  settings: S3Settings,
  request: S3Request,
): { origin: string; host: string; path: string } {
  const { endpoint, pathStyle } = settings;
  const base = endpoint.pathname.replace(/\/+$/, '');
  const keyPath = request.key === undefined ? '' : request.key.split('/').map(encodeRfc3986).join('/');
  const host = pathStyle ? endpoint.host : `${bucket}.${endpoint.host}`;
  let path = pathStyle
    ? `${base}/${bucket}${request.key === undefined ? '' : `/${keyPath}`}`
    : `${base}/${keyPath}`;
  const query = Object.entries(request.query ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (query.length > 0)
    path += `?${query.map(([k, v]) => `${encodeRfc3986(k)}=${encodeRfc3986(v)}`).join('&')}`;
  return { origin: `${endpoint.protocol}//${host}`, host, path };
}

/** Where one attempt of `request` goes and its SigV4-signed headers (signed afresh per attempt). */
export function signedRequest(
  bucket: string,
  settings: S3Settings,
  request: S3Request,
): { origin: string; path: string; headers: Record<string, string> } {
  const { origin, host, path } = requestTarget(bucket, settings, request);
  const signed = aws4.sign(
    {
      service: 's3',
      region: settings.region,
      method: request.method,
      host,
      path,
      headers: { ...(typeof request.headers === 'function' ? request.headers() : request.headers) },
      ...(request.body === undefined
        ? {}
        : { body: Buffer.from(request.body.buffer, request.body.byteOffset, request.body.byteLength) }),
    },
    settings.credentials,
  );
  // aws4 leaves some values numbers (Content-Length): headers are text on the wire.
  const headers = Object.fromEntries(
    Object.entries(signed.headers ?? {}).map(([name, value]) => [name, String(value)]),
  );
  return { origin, path, headers };
}

/**
 * The error of a non-2xx answer to `request`, from its status and S3's `<Code>` in the
 * error body `text`: which ones are retried is decided by the code (isRetryable).
 */
export function answerError(
  request: S3Request,
  answer: { path: string; status: number; text: string },
  bucket: string,
  origin: string,
): S3Error {
  const { path, status } = answer;
  const { code: s3Code, message } = parseErrorBody(answer.text);
  const detail = `${request.method} ${path} at ${origin}: ${status}${s3Code === undefined ? '' : ` ${s3Code}`}${message === undefined ? '' : `: ${message}`}`;
  const options = { status, s3Code };
  if (status >= 500) return new S3Error('ERR_LR_SOURCE_HTTP_5XX', detail, options);
  if (status === 429 || (s3Code !== undefined && TRANSIENT_S3_CODES.has(s3Code)))
    return new S3Error('ERR_LR_S3_TRANSIENT', detail, options);
  if (status === 401 || status === 403) return new S3Error('ERR_LR_S3_ACCESS_DENIED', detail, options);
  if (status === 404 && s3Code === 'NoSuchBucket')
    return new S3Error('ERR_LR_S3_BUCKET_NOT_FOUND', `bucket ${bucket} does not exist (${detail})`, options);
  if (status === 404) return new S3Error('ERR_LR_S3_NOT_FOUND', detail, options);
  return new S3Error('ERR_LR_S3_REQUEST_FAILED', detail, options);
}
