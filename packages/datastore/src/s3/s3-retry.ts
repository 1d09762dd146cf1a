import { LiverestoreError } from '@liverestore/format';
import { describeError, isTransientError } from '@liverestore/format/internal';

/* What the S3 client retries, and how long it waits in between. */

/**
 * Codes the S3 client retries beyond every client's network failures
 * (`TRANSIENT_ERROR_CODES` of format): S3's own "try again" answers.
 */
const S3_RETRYABLE_CODES: ReadonlySet<string> = new Set(['ERR_LR_S3_TRANSIENT']);

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

/** True for a failure another attempt may not see. */
export function isRetryable(err: unknown): boolean {
  return isTransientError(err, S3_RETRYABLE_CODES);
}

export { describeError as describe };

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
