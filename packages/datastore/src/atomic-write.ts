import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isNoSpace, noSpaceError } from './no-space.js';

/** Prefix of every temporary file or directory the datastore writes; readers skip these names. */
export const TEMP_PREFIX = '.tmp-';

/** A name beside `path` that no other writer will pick. */
export function tempPathFor(path: string): string {
  return join(
    dirname(path),
    `${TEMP_PREFIX}${basename(path)}-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
}

const tracked = new Set<string>();

/** Records a temp file or directory being written; call the returned function once it is renamed or removed. */
export function trackTemp(path: string): () => void {
  tracked.add(path);
  return () => {
    tracked.delete(path);
  };
}

/** Removes every tracked temp now (synchronously: for a signal handler, just before the process ends). */
export function removeTrackedTemps(): void {
  for (const path of tracked) {
    try {
      rmSync(path, { recursive: true, force: true });
    } catch {
      // Best effort: the process is ending; the next run sweeps what is left.
    }
  }
  tracked.clear();
}

/** fsyncs a directory so that a rename inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs several directories, a few at a time (after many files were renamed into them). */
export async function fsyncDirs(dirs: Iterable<string>, parallel = 16): Promise<void> {
  const queue = [...dirs];
  await Promise.all(
    Array.from({ length: Math.min(parallel, queue.length) }, async () => {
      for (let dir = queue.pop(); dir !== undefined; dir = queue.pop()) await fsyncDir(dir);
    }),
  );
}

/**
 * Writes `data` to `path` so that after a crash the file is either absent/old or complete:
 * write a temporary file beside it, fsync it, rename it into place.
 * `syncDir` also fsyncs the directory (callers writing many files do that once themselves).
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array,
  options: { syncDir?: boolean } = {},
): Promise<void> {
  const temp = tempPathFor(path);
  const untrack = trackTemp(temp);
  try {
    const handle = await open(temp, 'wx', 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw isNoSpace(err) ? noSpaceError(path, err) : err;
  } finally {
    untrack();
  }
  if (options.syncDir === true) await fsyncDir(dirname(path));
}
