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
import { abortError, ReaderError } from './errors.js';
import { DirectWriter } from './staged-writes.js';

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
  /** Chunks fetched and decoded at once; default 6 (the CLI gives 2 × decode workers + 2, which keeps the pool busy). */
  concurrency?: number;
  onProgress?: (progress: RestoreProgress) => void;
  signal?: AbortSignal;
  /**
   * Write with O_DIRECT, past the page cache, where the file system allows it (default
   * true): a restore writes each byte once, and fresh page-cache pages are what a buffered
   * restore spends most CPU on in a VM that hands free memory back to its host (staged-writes.ts).
   */
  directWrites?: boolean;
}

/** What a full restore did. */
export interface RestoreResult {
  readonly path: string;
  readonly sizeBytes: number;
  /** Bytes written (all-zero chunks and all-zero 64 KiB blocks are left as holes). */
  readonly bytesWritten: number;
  /** Chunks left as holes because they are all zero. */
  readonly zeroChunks: number;
  /** Of {@link bytesWritten}, the bytes written with O_DIRECT (0 where the file system refuses it). */
  readonly directBytes: number;
  readonly seconds: number;
}

/** One step of a restore, in index order: a chunk to decode and write, or a zero chunk. */
type RestoreJob =
  /** The first occurrence of a digest; `offsets` lists every place it occurs in the image. */
  | { readonly kind: 'data'; readonly chunk: number; readonly length: number; readonly offsets: number[] }
  /** An all-zero chunk: a hole in a regular file, zeros written on a block device. */
  | { readonly kind: 'zero'; readonly offset: number; readonly length: number };

/** The restore's steps: each distinct digest decoded once, at its first occurrence; zero chunks in place. */
function planRestore(reader: CachedChunkReader): { jobs: RestoreJob[]; largestChunkBytes: number } {
  const index = reader.index;
  const jobs: RestoreJob[] = [];
  const byDigest = new Map<string, { offsets: number[] }>();
  let largestChunkBytes = 0;
  for (let i = 0; i < index.chunkCount; i++) {
    const offset = index.chunkStart(i);
    const length = index.chunkEnd(i) - offset;
    largestChunkBytes = Math.max(largestChunkBytes, length);
    if (reader.isZeroChunk(i)) {
      jobs.push({ kind: 'zero', offset, length });
      continue;
    }
    const hex = reader.digestHexAt(i);
    const seen = byDigest.get(hex);
    if (seen !== undefined) {
      seen.offsets.push(offset);
      continue;
    }
    const job: RestoreJob = { kind: 'data', chunk: i, length, offsets: [offset] };
    byDigest.set(hex, job);
    jobs.push(job);
  }
  return { jobs, largestChunkBytes };
}

/** Zeros for the zero chunks of a block device (which has no holes). */
const ZERO_PIECE = Buffer.alloc(1024 * 1024);

async function writeZeros(handle: FileHandle, offset: number, length: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesWritten } = await handle.write(
      ZERO_PIECE,
      0,
      Math.min(ZERO_PIECE.length, length - done),
      offset + done,
    );
    done += bytesWritten;
  }
}

/**
 * Restores a whole archive to `path`: this thread fetches the blob of each distinct chunk
 * once (`concurrency` at a time), a decode thread verifies it and stages it in this lane's
 * slot of shared memory, and libuv writes it from there with O_DIRECT at every offset
 * where it occurs (staged-writes.ts); decoded bytes never cross to this thread's heap or
 * through the cache's memory. Where the file system refuses O_DIRECT (or with
 * `directWrites: false`) the decode thread writes through the page cache itself. All-zero chunks, and
 * all-zero 64 KiB blocks inside chunks, stay holes in a regular file. A regular file is
 * written to a temporary name, fsynced and renamed, so `path` is either the complete
 * image or untouched; a block device is written in place (its zero chunks are written
 * too, since a device has no holes). The reader must live on the cache's thread
 * (`Snapshot.openArchive`, not a remote reader).
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
  if (!reader.decodesToFile)
    throw new TypeError("restoreArchive needs a reader on the cache's thread (Snapshot.openArchive)");
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
  const { jobs, largestChunkBytes } = planRestore(reader);
  const lanes = Math.min(concurrency, Math.max(1, jobs.length));
  let bytesDone = 0;
  let bytesWritten = 0;
  let zeroChunks = 0;
  const writeback = new Writeback(handle);
  let direct: DirectWriter | undefined;
  try {
    if (!isDevice) await handle.truncate(reader.size);
    if (options.directWrites !== false)
      direct = await DirectWriter.open(target, handle, lanes, largestChunkBytes);
    const signal = options.signal;
    let next = 0;
    // The first failure; lanes stop taking jobs, and every job in flight is waited for, so
    // no decode thread writes to the descriptor after it is closed.
    let failure: { readonly error: unknown } | undefined;
    const lane = async (slot: number): Promise<void> => {
      while (failure === undefined && next < jobs.length && signal?.aborted !== true) {
        const job = jobs[next++]!;
        try {
          if (job.kind === 'zero') {
            zeroChunks++;
            if (isDevice) {
              await writeZeros(handle, job.offset, job.length);
              bytesWritten += job.length;
            }
          } else {
            // Not `bytesWritten += await …`: that would add to the count read before the wait.
            let written: number;
            if (direct === undefined) {
              written = await reader.decodeChunkToFile(
                job.chunk,
                { fd: handle.fd, offsets: job.offsets, sparse: !isDevice },
                signal,
              );
            } else {
              // The decode thread stages the chunk in this lane's slot; libuv writes it.
              await reader.decodeChunkToFile(job.chunk, direct.target(slot, !isDevice), signal);
              written = await direct.write(slot, job.offsets);
            }
            bytesWritten += written;
          }
        } catch (error) {
          failure ??= { error };
          return;
        }
        // Start writeback while decoding goes on, so the final fsync finds little left.
        writeback.written(bytesWritten);
        bytesDone += job.length * (job.kind === 'data' ? job.offsets.length : 1);
        options.onProgress?.({ bytesDone, bytesTotal: reader.size });
      }
    };
    await Promise.all(Array.from({ length: lanes }, (_, slot) => lane(slot)));
    if (signal?.aborted === true) throw abortError(signal);
    if (failure !== undefined) throw failure.error;
    await writeback.sync();
  } catch (err) {
    await writeback.settle();
    await direct?.close();
    await handle.close();
    if (!isDevice) await rm(target, { force: true });
    untrack();
    throw isNoSpace(err) ? noSpaceError(path, err) : err;
  }
  await direct?.close();
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
    directBytes: direct?.directBytes ?? 0,
    seconds: (performance.now() - started) / 1000,
  };
}
