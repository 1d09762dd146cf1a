/*
 * Which failures of a request are worth another attempt, for every client of this
 * repository that retries (the HTTP chunk source, the S3 client): network failures,
 * timeouts and server errors, found in an error, its cause or the errors of an
 * AggregateError (a dual-stack connect), never a refusal or a malformed answer.
 */

/** Network failures worth another attempt: the server may be restarting or the path flapping. */
export const TRANSIENT_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ERR_LR_SOURCE_TIMEOUT',
  'ERR_LR_SOURCE_HTTP_5XX',
]);

const NONE: ReadonlySet<string> = new Set();

/**
 * True for a failure another attempt may not see: a code of {@link TRANSIENT_ERROR_CODES}
 * or of the caller's `extraCodes`, or an HTTP parser error (`HPE_*`), on the error, its
 * cause or any of its `errors`; false for a permanent one. (`HPE_*` is a malformed
 * answer as the HTTP/1.1 client reports it: often a connection cut mid-head.)
 */
export function isTransientError(err: unknown, extraCodes: ReadonlySet<string> = NONE): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (
    typeof code === 'string' &&
    (TRANSIENT_ERROR_CODES.has(code) || extraCodes.has(code) || code.startsWith('HPE_'))
  )
    return true;
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  if (cause !== undefined && cause !== err) return isTransientError(cause, extraCodes);
  const errors = (err as { errors?: unknown } | undefined)?.errors;
  return Array.isArray(errors) && errors.some((e) => isTransientError(e, extraCodes));
}

/** An error for a one-line message: its code in front when the message does not say it. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
}
