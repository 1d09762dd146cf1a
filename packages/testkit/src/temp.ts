/**
 * Temporary directories for tests that write files (datastores, image files).
 *
 * Each test gets its own fresh directory under the OS temp dir, so tests run in
 * parallel without sharing paths, and removes it with `cleanup` (typically passed to
 * ava's `t.teardown`).
 */

import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh directory and the function that deletes it. */
export interface TempDir {
  readonly path: string;
  /** Removes the directory and everything in it; safe to call more than once. */
  cleanup(): Promise<void>;
}

/**
 * Creates a new empty directory `os.tmpdir()/<prefix>XXXXXX`.
 *
 * @param prefix file-name prefix, without path separators; `liverestore-` by default
 */
export async function tempDir(prefix = 'liverestore-'): Promise<TempDir> {
  if (typeof prefix !== 'string') throw new TypeError('prefix must be a string');
  if (/[\\/\0]/.test(prefix)) throw new RangeError('prefix must not contain path separators or NUL');
  const path = await mkdtemp(join(tmpdir(), prefix));
  return {
    path,
    cleanup: () => rm(path, { recursive: true, force: true, maxRetries: 3 }),
  };
}

/** Whether the file system of `dir` lets a file be opened with O_DIRECT (tmpfs before Linux 6.6 does not). */
export async function allowsDirectIo(dir: string): Promise<boolean> {
  const probe = join(dir, `.direct-probe-${process.pid}`);
  try {
    await (await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT)).close();
    return true;
  } catch {
    return false;
  } finally {
    await rm(probe, { force: true });
  }
}
