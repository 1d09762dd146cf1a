import { LiveError } from './errors.js';

/**
 * The NBD server reports an error's `code` when it is a POSIX one (ENOSPC → NBD_ENOSPC)
 * and EIO otherwise: a LiveError that knows its POSIX error is re-thrown with that code
 * (the LiveError, with its ERR_LR_ code, as `cause`).
 */
export async function forNbd<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof LiveError && err.errno !== undefined) {
      throw Object.assign(new Error(`${err.code}: ${err.message}`, { cause: err }), { code: err.errno });
    }
    throw err;
  }
}

// The repository's one "wait for all, fail with the first" (live-drive and copy-job import it from here).
export { settleAll } from '@liverestore/format/internal';
