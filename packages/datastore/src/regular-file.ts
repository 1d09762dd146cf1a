import { constants, type Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { MAX_BLOB_BYTES } from '@liverestore/format';
import type { BodyMemory } from '@liverestore/format/internal';
import { DatastoreError } from './errors.js';

/**
 * The largest chunk file a store may hold: the largest blob payload plus room for any
 * blob header (12 bytes plain, 44 encrypted). A bigger file is not a chunk, and reading
 * it whole would only cost memory.
 */
export const MAX_CHUNK_FILE_BYTES = MAX_BLOB_BYTES + 4096;

/**
 * Flags for opening a store file that may be hostile: O_NOFOLLOW (a symlink, e.g. to
 * /dev/zero, is refused rather than read without end) and O_NONBLOCK (opening a FIFO
 * returns at once instead of blocking a libuv thread forever; with four such threads
 * stuck, every file operation of the process stops). Neither changes reads of a regular file.
 */
export const STORE_FILE_OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/** The error for a store file that is there but must not be read: it names the file. */
function notRegular(path: string, what: string, cause?: unknown): DatastoreError {
  return new DatastoreError('ERR_LR_STORE_FILE_NOT_REGULAR', `${path} is ${what}, not a regular file`, {
    cause,
  });
}

/**
 * Opens a file of a store for reading, only if it is a regular file (checked with fstat
 * on the opened descriptor, so nothing can be swapped in between) of at most `maxBytes`.
 * Errors: `ERR_LR_STORE_FILE_NOT_REGULAR` (symlink, FIFO, directory, device),
 * `ERR_LR_STORE_FILE_TOO_LARGE`; ENOENT and other errno errors pass through for the
 * caller to name what is missing.
 */
export async function openRegularFile(
  path: string,
  maxBytes = Number.MAX_SAFE_INTEGER,
): Promise<{ handle: FileHandle; sizeBytes: number }> {
  let handle: FileHandle;
  try {
    handle = await open(path, STORE_FILE_OPEN_FLAGS);
  } catch (err) {
    if ((err as { code?: string }).code === 'ELOOP') throw notRegular(path, 'a symbolic link', err);
    throw err;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw notRegular(path, kindOf(info));
    if (info.size > maxBytes) {
      throw new DatastoreError(
        'ERR_LR_STORE_FILE_TOO_LARGE',
        `${path} is ${info.size} bytes, more than the ${maxBytes} bytes such a file can have`,
      );
    }
    return { handle, sizeBytes: info.size };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/**
 * A Buffer of `bytes` to read a file into: over the array `memory` gives (a chunk cache's
 * blob memory), else fresh and not from Node's small-buffer pool.
 */
export function fileBuffer(bytes: number, memory?: BodyMemory): Buffer {
  const into = memory?.(bytes);
  return into === undefined
    ? Buffer.allocUnsafeSlow(bytes)
    : Buffer.from(into.buffer, into.byteOffset, into.byteLength);
}

/**
 * Reads a whole store file through {@link openRegularFile}: never more than the size
 * fstat gave (a file that grows meanwhile is cut there, and a later check of its content
 * fails), so a hostile file costs at most `maxBytes` of memory. With `memory`, the bytes
 * go into the array it gives for the file's size (a chunk cache's blob memory).
 */
export async function readRegularFile(
  path: string,
  maxBytes?: number,
  signal?: AbortSignal,
  memory?: BodyMemory,
): Promise<Buffer> {
  const { handle, sizeBytes } = await openRegularFile(path, maxBytes);
  try {
    const buffer = fileBuffer(sizeBytes, memory);
    let filled = 0;
    while (filled < sizeBytes) {
      signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, filled, sizeBytes - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === sizeBytes ? buffer : buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}
