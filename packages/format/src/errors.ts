/**
 * Errors of liverestore carry a stable `code` (`ERR_LR_*`) that callers match on,
 * instead of parsing messages. Every package derives its errors from
 * {@link LiverestoreError}; docs/errors.md lists every code.
 */

/** Options accepted by every liverestore error. */
export interface LiverestoreErrorOptions {
  /** The lower-level error that caused this one. */
  cause?: unknown;
}

/** Base of every error liverestore throws on purpose. */
export class LiverestoreError extends Error {
  /** Stable identifier of the failure, e.g. `ERR_LR_BLOB_CRC_MISMATCH`. */
  readonly code: string;

  constructor(code: string, message: string, options: LiverestoreErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
}

/** A file or blob does not follow the format it claims (magic, header, length, field values). */
export class FormatError extends LiverestoreError {}

/** Stored bytes do not match their checksum: CRC-32, chunk digest, index or manifest checksum. */
export class IntegrityError extends LiverestoreError {}

/** Encryption is involved and the key is missing, wrong or unusable. */
export class CryptError extends LiverestoreError {}

/** The decoded size of a blob is over its limit: a decompression bomb, or a chunk longer than its index says. */
export function blobTooLarge(maxBytes: number, detail?: string): IntegrityError {
  return new IntegrityError(
    'ERR_LR_BLOB_TOO_LARGE',
    `decoded blob exceeds the limit of ${maxBytes} bytes${detail === undefined ? '' : ` (${detail})`}`,
  );
}

/** True when `err` is a liverestore error with the given code. */
export function hasCode(err: unknown, code: string): boolean {
  return err instanceof Error && (err as { code?: unknown }).code === code;
}
