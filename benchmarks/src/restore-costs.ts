/**
 * What a cold full restore costs besides decoding, each part measured alone on the same
 * machine: fetching every distinct blob from `liverestore serve` without decoding it, and
 * writing the restored bytes to the scratch directory. With the decode limit's own CPU
 * time they bound the restore: on `cores` cores it cannot take less than all their CPU
 * seconds divided by the cores, however well it overlaps them.
 */

import { open, rm } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { HttpChunkSource, Writeback } from '@liverestore/reader';
import type { RestoreChunks } from './decode-limit.js';
import { processCpuSeconds } from './proc-stats.js';

/** Wall time of a run, and the CPU time it took: this process (all threads) plus `serve`. */
export interface Costed {
  readonly seconds: number;
  readonly cpuSeconds: number;
}

/** Runs `work` and measures it as {@link Costed}; `serve`'s part is NaN where /proc is missing. */
export async function costed(servePid: number, work: () => Promise<void>): Promise<Costed> {
  const self = process.cpuUsage();
  const serveBefore = await processCpuSeconds(servePid);
  const t0 = performance.now();
  await work();
  const seconds = (performance.now() - t0) / 1000;
  const used = process.cpuUsage(self);
  const serveAfter = await processCpuSeconds(servePid);
  const serve = (serveAfter ?? Number.NaN) - (serveBefore ?? Number.NaN);
  return { seconds, cpuSeconds: (used.user + used.system) / 1e6 + serve };
}

/**
 * Fetches every distinct chunk blob of `chunks` once from the server at `url` with
 * `concurrency` fetches at a time, as background fetches (what a restore's sequential
 * reads are), and drops them: the transfer part of a restore, no decode, no cache.
 */
export async function fetchEveryBlob(url: string, chunks: RestoreChunks, concurrency: number): Promise<void> {
  const source = await HttpChunkSource.open(url);
  try {
    const digests = [...chunks.tasks.keys()];
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < digests.length) await source.fetchChunk(digests[next++]!, undefined, { urgent: false });
      }),
    );
  } finally {
    await source.close();
  }
}

/** Piece size of {@link writeBytes}: one chunk, as a restore writes. */
const WRITE_PIECE_BYTES = 4 * 1024 * 1024;

/**
 * Writes `bytes` bytes to a new file at `path` in chunk-sized pieces, as `restoreArchive`
 * writes (its {@link Writeback}: writeback started every 256 MiB, fsync at the end), and
 * removes it: the sink part of a restore of that much data into the same directory.
 */
export async function writeBytes(path: string, bytes: number): Promise<void> {
  const piece = Buffer.alloc(WRITE_PIECE_BYTES, 0xa5);
  const handle = await open(path, 'wx');
  const writeback = new Writeback(handle);
  try {
    for (let at = 0; at < bytes; at += piece.length) {
      const n = Math.min(piece.length, bytes - at);
      await handle.write(piece, 0, n, at);
      writeback.written(at + n);
    }
    await writeback.sync();
  } finally {
    await writeback.settle();
    await handle.close();
    await rm(path, { force: true });
  }
}
