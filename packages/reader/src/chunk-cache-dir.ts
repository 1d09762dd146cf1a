import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ReaderError } from './errors.js';

/*
 * The on-disk layout of a persistent chunk cache (see persistent-chunk-cache.ts):
 *
 *   DIR/.liverestore-chunk-cache     marker: this directory is a chunk cache
 *   DIR/<4hex>/<64hex>               one raw blob per chunk, as a datastore's .chunks
 *   DIR/<4hex>/.tmp-<64hex>-<pid>-<rand>  a blob being written (renamed when complete)
 *
 * The marker guards eviction: the cache deletes files, so it refuses a non-empty
 * directory it did not make (a datastore's .chunks has the same layout).
 */

/** The file that marks a directory as a chunk cache. */
export const CHUNK_CACHE_MARKER = '.liverestore-chunk-cache';
/** Prefix of blobs being written; never read as entries. */
const TEMP_PREFIX = '.tmp-';
/** A temp file this old is left over by a process that died while writing it. */
export const STALE_TEMP_MS = 60 * 60 * 1000;

const DIGEST = /^[0-9a-f]{64}$/;
const PREFIX = /^[0-9a-f]{4}$/;
const TEMP = /^\.tmp-[0-9a-f]{64}-\d+-[0-9a-f]{8}$/;

/** True for a chunk digest as the cache stores it (64 lower-case hex digits): nothing else becomes a path. */
export function isCacheableDigest(digestHex: string): boolean {
  return DIGEST.test(digestHex);
}

/** `DIR/<first 4 hex>/<digest>`. */
export function entryPath(dir: string, digestHex: string): string {
  return join(dir, digestHex.slice(0, 4), digestHex);
}

/** A temp name beside the entry that no other writer (process or call) picks. */
export function tempEntryPath(dir: string, digestHex: string): string {
  return join(
    dir,
    digestHex.slice(0, 4),
    `${TEMP_PREFIX}${digestHex}-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
}

/** One blob found by {@link scanCacheDir}. */
export interface ScannedEntry {
  readonly digestHex: string;
  readonly bytes: number;
  readonly mtimeMs: number;
}

function dirError(dir: string, why: string, cause?: unknown): ReaderError {
  return new ReaderError(
    'ERR_LR_CHUNK_CACHE_DIR',
    `chunk cache directory ${dir} ${why}`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Makes `dir` a chunk cache (created when missing, marked when empty); refuses a
 * non-empty directory without the marker, and one that cannot be read or written.
 */
export async function prepareCacheDir(dir: string): Promise<void> {
  let names: string[];
  try {
    await mkdir(dir, { recursive: true });
    names = await readdir(dir);
  } catch (cause) {
    throw dirError(dir, `cannot be made or read (${(cause as { code?: string }).code ?? 'error'})`, cause);
  }
  if (names.includes(CHUNK_CACHE_MARKER)) return;
  // A file system of its own (a mount point) starts with lost+found: that is empty too.
  if (names.some((name) => name !== 'lost+found'))
    throw dirError(dir, 'is not empty and is not a chunk cache: give an empty or new directory');
  try {
    await writeFile(join(dir, CHUNK_CACHE_MARKER), 'liverestore chunk cache 1\n', { flag: 'wx' });
  } catch (cause) {
    // Another process marked it at the same moment: that is the same cache.
    if ((cause as { code?: string }).code !== 'EEXIST')
      throw dirError(dir, `cannot be written (${(cause as { code?: string }).code ?? 'error'})`, cause);
  }
}

/**
 * Every blob under `dir`, and the removal of temp files older than {@link STALE_TEMP_MS}
 * (by `nowMs`) that a dead writer left. Entries vanishing during the scan (another process
 * evicting) are skipped; names that are not the cache's own are left alone.
 */
export async function scanCacheDir(dir: string, nowMs: number): Promise<ScannedEntry[]> {
  const found: ScannedEntry[] = [];
  const prefixes = (await readdir(dir)).filter((name) => PREFIX.test(name));
  for (const prefix of prefixes) {
    let names: string[];
    try {
      names = await readdir(join(dir, prefix));
    } catch {
      continue;
    }
    await Promise.all(
      names.map(async (name) => {
        const isEntry = DIGEST.test(name) && name.startsWith(prefix);
        if (!isEntry && !TEMP.test(name)) return;
        const path = join(dir, prefix, name);
        const stat = await lstat(path).catch(() => undefined);
        if (stat === undefined || !stat.isFile()) return;
        if (isEntry) found.push({ digestHex: name, bytes: stat.size, mtimeMs: stat.mtimeMs });
        else if (nowMs - stat.mtimeMs > STALE_TEMP_MS) await rm(path, { force: true }).catch(() => undefined);
      }),
    );
  }
  return found;
}
