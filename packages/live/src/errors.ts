import { LiverestoreError, type LiverestoreErrorOptions } from '@liverestore/format';

/** A failure of the writable live restore (target files, allocation maps, copy job); `code` is stable. */
export class LiveError extends LiverestoreError {
  /**
   * The POSIX error to report to an NBD client (`ENOSPC`, `EIO`, …) when this error ends
   * an NBD request; set when a system error caused it.
   */
  readonly errno: string | undefined;

  constructor(code: string, message: string, options: LiverestoreErrorOptions & { errno?: string } = {}) {
    super(code, message, options);
    this.errno = options.errno;
  }
}

/** The `code` of a Node system error (`ENOSPC`, `EIO`, …), if it is one. */
export function systemCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/**
 * Wraps a failed write or sync of a target file: a full disk becomes
 * `ERR_LR_LIVE_NO_SPACE` (NBD_ENOSPC to a client), anything else `ERR_LR_LIVE_TARGET_IO`.
 */
export function targetIoError(err: unknown, path: string, what: string): LiveError {
  if (err instanceof LiveError) return err;
  const code = systemCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new LiveError('ERR_LR_LIVE_NO_SPACE', `no space left on the device of ${path} (${what})`, {
      cause: err,
      errno: 'ENOSPC',
    });
  }
  return new LiveError(
    'ERR_LR_LIVE_TARGET_IO',
    `${what} ${path} failed (${code ?? (err as Error).message})`,
    {
      cause: err,
      errno: code === 'EROFS' || code === 'EACCES' || code === 'EPERM' ? 'EPERM' : 'EIO',
    },
  );
}
