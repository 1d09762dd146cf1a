import { LiverestoreError } from '@liverestore/format';

/** A request the HTTP server refuses; `code` is what clients match on, the status follows from it. */
export class ServerError extends LiverestoreError {}

/**
 * HTTP status of each error code a client can cause. Codes from the other packages keep
 * their meaning over HTTP; anything not listed is a 500.
 */
export const STATUS_OF_CODE: Readonly<Record<string, number>> = Object.freeze({
  ERR_LR_HTTP_BAD_PATH: 400,
  ERR_LR_DIGEST_INVALID: 400,
  ERR_LR_ARCHIVE_NAME_INVALID: 400,
  ERR_LR_SNAPSHOT_INVALID: 400,
  ERR_LR_NAMESPACE_INVALID: 400,
  ERR_LR_HTTP_BAD_RANGE: 400,
  ERR_LR_HTTP_UNAUTHORIZED: 401,
  ERR_LR_KEY_REQUIRED: 403,
  ERR_LR_HTTP_NOT_FOUND: 404,
  ERR_LR_SNAPSHOT_NOT_FOUND: 404,
  ERR_LR_NAMESPACE_NOT_FOUND: 404,
  ERR_LR_CHUNK_MISSING: 404,
  ERR_LR_SNAPSHOT_FILE_NOT_FOUND: 404,
  ERR_LR_ARCHIVE_NOT_FOUND: 404,
  ERR_LR_HTTP_METHOD_NOT_ALLOWED: 405,
  ERR_LR_HTTP_RANGE_NOT_SATISFIABLE: 416,
  ERR_LR_HTTP_BUSY: 503,
  ERR_LR_HTTP_CLOSING: 503,
  // The server's own source (an S3 datastore) did not answer: try again, or another server.
  ERR_LR_SOURCE_UNAVAILABLE: 503,
});

/** Code used for failures that are not liverestore errors (bugs, I/O errors): details stay in the log. */
export const INTERNAL_CODE = 'ERR_LR_HTTP_INTERNAL';

/** The body and status a failure is answered with; never a stack trace, never a server path. */
export function describeError(
  err: unknown,
  storeDir: string,
): { status: number; code: string; message: string } {
  if (err instanceof LiverestoreError) {
    const status = STATUS_OF_CODE[err.code] ?? 500;
    // Messages of the datastore name the store directory; clients need not know it.
    const message = redactStoreDir(err.message, storeDir);
    return { status, code: err.code, message };
  }
  return { status: 500, code: INTERNAL_CODE, message: 'internal server error' };
}

/**
 * `message` with every path that starts with `storeDir` shown as starting with `<store>`.
 * Only whole path prefixes are replaced (the directory at the start of a word, followed by
 * `/` or the end of the word): with `--store .`, replacing every "." made
 * `drive-scsi7.img.fidx` read `drive-scsi7<store>img<store>fidx`.
 */
export function redactStoreDir(message: string, storeDir: string): string {
  const dir = storeDir.length > 1 ? storeDir.replace(/\/+$/, '') : storeDir;
  if (dir === '') return message;
  const literal = dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const prefix = new RegExp(`(^|[\\s"'(=])${literal}(?=/|$|[\\s"'),;:])`, 'g');
  return message.replace(prefix, '$1<store>');
}
