import { LiverestoreError } from '@liverestore/format';

/* What the S3 client retries, and how long it waits in between. */

/** Network failures worth another attempt: the endpoint may be restarting or the path flapping. */
export const RETRYABLE_CODES = new Set([
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
  'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ERR_LR_SOURCE_TIMEOUT',
  'ERR_LR_SOURCE_HTTP_5XX',
  'ERR_LR_S3_TRANSIENT',
]);

/** 4xx answers that S3 documents as "try again": throttling, a slow upload, a racing conditional write. */
export const TRANSIENT_S3_CODES = new Set([
  'RequestTimeout',
  'SlowDown',
  'OperationAborted',
  'ConditionalRequestConflict',
  'TooManyRequests',
]);

/** Largest error body read (S3's XML error); anything longer is cut off. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** Largest answer of a listing page or a DeleteObjects call (1000 keys of ≤ 1 KiB, escaped). */
export const MAX_XML_BYTES = 16 * 1024 * 1024;
/** Keys one DeleteObjects call may name (S3's limit). */
export const DELETE_BATCH = 1000;

export function isRetryable(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && (RETRYABLE_CODES.has(code) || code.startsWith('HPE_'))) return true;
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  if (cause !== undefined && cause !== err) return isRetryable(cause);
  const errors = (err as { errors?: unknown } | undefined)?.errors;
  return Array.isArray(errors) && errors.some(isRetryable);
}

export function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
}

/** Percent-encodes as SigV4 wants (RFC 3986 unreserved characters stay). */
export function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** The caller's abort as an error: its reason when that is an Error. */
export function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new LiverestoreError('ERR_LR_ABORTED', 'the S3 request was aborted');
}

/** Sleeps `ms`, or rejects as soon as `signal` fires. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
