import { DatastoreError } from './errors.js';

/** True for "the file system is full" (ENOSPC) or "the quota is used up" (EDQUOT). */
export function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * The error for a write to `path` that found no space: `ERR_LR_NO_SPACE` naming the path
 * (a bare ENOSPC reached the CLI as ERR_LR_SYSTEM, without saying which file system).
 */
export function noSpaceError(path: string, cause: unknown): DatastoreError {
  const code = (cause as { code?: string }).code ?? 'ENOSPC';
  return new DatastoreError('ERR_LR_NO_SPACE', `no space left to write ${path} (${code})`, { cause });
}
