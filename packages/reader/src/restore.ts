import { type FileHandle, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import {
  isNoSpace,
  noSpaceError,
  sweepStaleTemps,
  tempPathFor,
  trackTemp,
} from '@liverestore/datastore/internal';
import type { CachedChunkReader } from './cached-chunk-reader.js';
import { ReaderError } from './errors.js';

/** Granularity of holes inside a chunk: zero runs this long and aligned are not written. */
const HOLE_BYTES = 64 * 1024;
const ZEROS = Buffer.alloc(HOLE_BYTES);

/**
 * The [from, to) ranges of `data` that are not all-zero 64 KiB blocks, merged. A restored
 * file is then as sparse as the backed-up one was, not only at whole-chunk granularity.
 */
export function dataExtents(data: Buffer): Array<readonly [number, number]> {
  const extents: Array<[number, number]> = [];
  for (let at = 0; at < data.byteLength; at += HOLE_BYTES) {
    const end = Math.min(at + HOLE_BYTES, data.byteLength);
    if (data.subarray(at, end).equals(ZEROS.subarray(0, end - at))) continue;
    const last = extents.at(-1);
    if (last !== undefined && last[1] === at) last[1] = end;
    else extents.push([at, end]);
  }
  return extents;
}

/** Writeback is started (fdatasync in the background) after every this many bytes written. */
export const RESTORE_SYNC_EVERY_BYTES = 256 * 1024 * 1024;

/**
 * Starts writeback of a file being written (fdatasync in the background, one at a time)
 * after every `everyBytes` written, so the final fsync finds little left: how
 * {@link restoreArchive} writes.
 */
export class Writeback {
  #syncedAt = 0;
  #pending: Promise<void> | undefined;

  constructor(
    readonly handle: FileHandle,
    readonly everyBytes = RESTORE_SYNC_EVERY_BYTES,
  ) {}

  /** Call after each write with the bytes written so far. */
  written(total: number): void {
    if (total - this.#syncedAt < this.everyBytes || this.#pending !== undefined) return;
    this.#syncedAt = total;
    this.#pending = this.handle.datasync().finally(() => {
      this.#pending = undefined;
    });
  }

  /** Waits for the writeback in progress, then fsyncs: the file is durable. */
  async sync(): Promise<void> {
    await this.#pending;
    await this.handle.sync();
  }

  /** Waits for the writeback in progress, ignoring its failure (before closing after an error). */
  async settle(): Promise<void> {
    await this.#pending?.catch(() => undefined);
  }
}

/** Progress of {@link restoreArchive}, after every chunk. */
export interface RestoreProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

/** Options of {@link restoreArchive}. */
export interface RestoreOptions {
  /** Chunks read and written at once; default 2 × decode workers + 2 (keeps the pool busy). */
  concurrency?: number;
  onProgress?: (progress: RestoreProgress) => void;
  signal?: AbortSignal;
}

/** What a full restore did. */
export interface RestoreResult {
  readonly path: string;
  readonly sizeBytes: number;
  /** Bytes written (all-zero chunks and all-zero 64 KiB blocks are left as holes). */
  readonly bytesWritten: number;
  /** Chunks left as holes because they are all zero. */
  readonly zeroChunks: number;
  readonly seconds: number;
}

/**
 * Restores a whole archive to `path`. Chunks are read concurrently through the cache (so
 * the decode pool works in parallel) and written at their offsets; all-zero chunks stay
 * holes in a regular file. A regular file is written to a temporary name, fsynced and
 * renamed, so `path` is either the complete image or untouched; a block device is
 * written in place (its zero chunks are written too, since a device has no holes).
 */
export async function restoreArchive(
  reader: CachedChunkReader,
  path: string,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const started = performance.now();
  const concurrency = options.concurrency ?? 6;
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new RangeError('concurrency must be a positive integer');
  const existing = await stat(path).catch(() => undefined);
  const isDevice = existing?.isBlockDevice() === true;
  if (existing?.isDirectory() === true) {
    throw new ReaderError(
      'ERR_LR_OUTPUT_INVALID',
      `${path} is a directory; give a file name for the restored image`,
    );
  }
  // A restore of this file interrupted by a signal or a crash left its temp file: remove it.
  if (!isDevice) await sweepStaleTemps(dirname(path), `${basename(path)}-`);
  const target = isDevice ? path : tempPathFor(path);
  let handle: FileHandle;
  try {
    handle = await open(target, isDevice ? 'r+' : 'wx', 0o644);
  } catch (cause) {
    throw new ReaderError(
      'ERR_LR_OUTPUT_INVALID',
      `cannot write ${path} (${(cause as { code?: string }).code ?? 'error'})`,
      { cause },
    );
  }
  const untrack = isDevice ? () => undefined : trackTemp(target);
  const index = reader.index;
  let bytesDone = 0;
  let bytesWritten = 0;
  let zeroChunks = 0;
  const writeback = new Writeback(handle);
  try {
    if (!isDevice) await handle.truncate(reader.size);
    let next = 0;
    const worker = async (): Promise<void> => {
      // One buffer per worker for the whole restore, not one per chunk: 4 MiB allocations
      // at hundreds of MB/s are garbage-collector work on the thread that also fetches.
      let own = Buffer.alloc(0);
      while (next < index.chunkCount) {
        options.signal?.throwIfAborted();
        const i = next++;
        const start = index.chunkStart(i);
        const length = index.chunkEnd(i) - start;
        if (reader.isZeroChunk(i) && !isDevice) {
          zeroChunks++;
        } else {
          if (own.length < length) own = Buffer.allocUnsafe(length);
          const buffer = own.subarray(0, length);
          await reader.readAt(buffer, start, options.signal);
          for (const [from, to] of isDevice ? [[0, length] as const] : dataExtents(buffer)) {
            let written = from;
            while (written < to) {
              const { bytesWritten: n } = await handle.write(buffer, written, to - written, start + written);
              written += n;
            }
            bytesWritten += to - from;
          }
          // Start writeback while decoding goes on, so the final fsync finds little left.
          writeback.written(bytesWritten);
        }
        bytesDone += length;
        options.onProgress?.({ bytesDone, bytesTotal: reader.size });
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, index.chunkCount)) }, worker));
    await writeback.sync();
  } catch (err) {
    await writeback.settle();
    await handle.close();
    if (!isDevice) await rm(target, { force: true });
    untrack();
    throw isNoSpace(err) ? noSpaceError(path, err) : err;
  }
  await handle.close();
  if (!isDevice) {
    await rename(target, path);
    untrack();
    const dir = await open(dirname(path), 'r');
    await dir.sync().finally(() => dir.close());
  }
  return {
    path,
    sizeBytes: reader.size,
    bytesWritten,
    zeroChunks,
    seconds: (performance.now() - started) / 1000,
  };
}
