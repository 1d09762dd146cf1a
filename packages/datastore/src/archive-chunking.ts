/**
 * How one archive of a backup becomes chunks and an index: fixed-size chunks for disk
 * images, content-defined chunks for other files. Each chunk goes to the run's ChunkSink,
 * which dedups, encodes and writes it.
 */

import { createReadStream } from 'node:fs';
import { Chunker, DIGEST_BYTES, writeDynamicIndex, writeFixedIndex } from '@liverestore/format';
import type { ArchiveName } from './archive-name.js';
import { type ChunkSink, isAllZero } from './chunk-sink.js';
import { BackupSourceError } from './errors.js';
import { openImageSource, readFully } from './image-source.js';

/** One archive of a backup: its name, the file or device read, the size it had when the backup began. */
export interface ArchiveRun {
  readonly archive: ArchiveName;
  readonly path: string;
  readonly sizeBytes: number;
}

/** The index an archive's chunks made, and what they were. */
export interface WrittenIndex {
  readonly index: Buffer;
  readonly chunks: number;
  readonly zeroChunks: number;
}

/** Cuts a disk image into fixed-size chunks (a .fidx); every chunk read at its offset. */
export async function backupFixed(
  run: ArchiveRun,
  sink: ChunkSink,
  chunkSizeBytes: number,
  ctime: number,
  progress: (bytesDone: number, delta: number) => void,
  signal: AbortSignal | undefined,
): Promise<WrittenIndex> {
  const source = await openImageSource(run.path);
  try {
    if (source.sizeBytes !== run.sizeBytes) {
      throw new BackupSourceError('ERR_LR_SOURCE_CHANGED', `${run.path} changed size while being backed up`);
    }
    const count = Math.ceil(run.sizeBytes / chunkSizeBytes);
    const digests = Buffer.alloc(count * DIGEST_BYTES);
    const zeros = Buffer.alloc(chunkSizeBytes);
    let zeroChunks = 0;
    for (let i = 0; i < count; i++) {
      signal?.throwIfAborted();
      const start = i * chunkSizeBytes;
      const length = Math.min(chunkSizeBytes, run.sizeBytes - start);
      // A fresh buffer per chunk: a new chunk's memory moves to the encoder thread.
      const data = Buffer.allocUnsafeSlow(length);
      await readFully(source, data, length, start, run.path);
      const isZero = isAllZero(data, zeros);
      if (isZero) zeroChunks++;
      const { digest } = await sink.add(data, isZero);
      digest.copy(digests, i * DIGEST_BYTES);
      progress(start + length, length);
    }
    return {
      index: writeFixedIndex({ sizeBytes: run.sizeBytes, chunkSizeBytes, digests, ctime }),
      chunks: count,
      zeroChunks,
    };
  } finally {
    await source.handle.close();
  }
}

/** Cuts a file into content-defined chunks with the PBS chunker (a .didx), streamed in 1 MiB reads. */
export async function backupDynamic(
  run: ArchiveRun,
  sink: ChunkSink,
  avgBytes: number,
  ctime: number,
  progress: (bytesDone: number, delta: number) => void,
  signal: AbortSignal | undefined,
): Promise<WrittenIndex> {
  const chunker = new Chunker(avgBytes);
  const entries: { endOffset: number; digest: Buffer }[] = [];
  const zeros = Buffer.alloc(chunker.maxBytes);
  let zeroChunks = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let offset = 0;
  let emitting = false;
  const emit = async (): Promise<void> => {
    emitting = true;
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    const isZero = isAllZero(data, zeros);
    if (isZero) zeroChunks++;
    const { digest } = await sink.add(data, isZero);
    offset += pendingBytes;
    entries.push({ endOffset: offset, digest });
    progress(offset, pendingBytes);
    pending = [];
    pendingBytes = 0;
    emitting = false;
  };
  const stream = createReadStream(run.path, {
    highWaterMark: 1024 * 1024,
    ...(signal === undefined ? {} : { signal }),
  });
  try {
    for await (const piece of stream as AsyncIterable<Buffer>) {
      let rest = piece;
      while (rest.byteLength > 0) {
        const cut = chunker.scan(rest);
        if (cut === 0) {
          pending.push(rest);
          pendingBytes += rest.byteLength;
          break;
        }
        pending.push(rest.subarray(0, cut));
        pendingBytes += cut;
        rest = rest.subarray(cut);
        await emit();
      }
    }
  } catch (cause) {
    if (emitting || (cause instanceof Error && cause.name === 'AbortError')) throw cause;
    throw new BackupSourceError('ERR_LR_SOURCE_UNREADABLE', `read error in ${run.path}`, { cause });
  }
  if (pendingBytes > 0) await emit();
  if (offset !== run.sizeBytes) {
    throw new BackupSourceError('ERR_LR_SOURCE_CHANGED', `${run.path} changed size while being backed up`);
  }
  return { index: writeDynamicIndex({ entries, ctime }), chunks: entries.length, zeroChunks };
}
