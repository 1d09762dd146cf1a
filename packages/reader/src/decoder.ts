import { availableParallelism } from 'node:os';
import { esmWorkerPool } from '@liverestore/datastore/internal';
import { canDecodeArriving } from '@liverestore/format/internal';
import { Piscina } from 'piscina';
import type { BlobPool } from './blob-pool.js';
import type { DecodeAnswer } from './decode-thread.js';
import {
  type ArrivingDecodeTask,
  type ChunkBlobTask,
  type DecodeResult,
  type DecodeTask,
  decodeInto,
  decodeToFile,
  type FileDecodeResult,
  type FileDecodeTask,
} from './decode-worker.js';
import { ReaderError } from './errors.js';
import type { SharedCacheMemory, SlotTable } from './slot-table.js';

/** Verifies and decodes chunks into cache slots. */
export interface ChunkDecoder {
  /**
   * Resolves when the plaintext is in the pages, or with the reason it is not. With
   * `takeBlob` the caller gives up `task.blob` (see ChunkSource.blobsAreTransferable): a
   * pool may move its memory to a worker instead of copying it.
   */
  decode(task: DecodeTask, takeBlob?: boolean): Promise<DecodeResult>;
  /**
   * Decodes a blob while it arrives (see ArrivingDecodeTask), on a thread of its own until
   * the blob's end: resolves like {@link decode}, or with 'given up' when the cache gave the
   * blob up first. Only decoders whose threads can (zstd-napi's stream decoder loads).
   */
  decodeArriving?(task: ArrivingDecodeTask): Promise<DecodeResult | 'given up'>;
  /** Resolves when the plaintext is written at every offset of the task's file, or with the reason it is not. */
  decodeToFile(task: FileDecodeTask, takeBlob?: boolean): Promise<FileDecodeResult>;
  /** Decoding threads (0 for inline). */
  readonly threads: number;
  close(): Promise<void>;
}

/**
 * Decodes on the calling thread: for `workers: 0` (tests, tiny caches). A blob from
 * `blobs` that the caller gave up goes back to it once decoded.
 */
export function inlineDecoder(table: SlotTable, blobs?: BlobPool): ChunkDecoder {
  const giveBack = (task: ChunkBlobTask, takeBlob: boolean | undefined) => {
    if (takeBlob === true && blobs?.lent(task.blob) === true) blobs.give(task.blob.buffer as ArrayBuffer);
  };
  return {
    threads: 0,
    decode: async (task, takeBlob) => {
      const result = decodeInto(table, task);
      giveBack(task, takeBlob);
      return result;
    },
    decodeToFile: async (task, takeBlob) => {
      const result = decodeToFile(task);
      giveBack(task, takeBlob);
      return result;
    },
    close: async () => undefined,
  };
}

/**
 * A piscina pool that decodes into the shared arena, or straight into output files. A worker that dies (crash,
 * terminate, out of memory) is replaced by piscina; the task it held fails with
 * `ERR_LR_DECODE_WORKER_DIED` instead of hanging. A blob from `blobs` that the caller gave
 * up moves to the thread whole (its buffer may be larger than the blob) and back to `blobs`.
 */
export function poolDecoder(
  memory: SharedCacheMemory,
  threads = availableParallelism(),
  blobs?: BlobPool,
): ChunkDecoder & { readonly pool: Piscina } {
  if (!Number.isInteger(threads) || threads < 1)
    throw new RangeError('workers must be a positive integer (or 0 for inline)');
  const pool = new Piscina({
    ...esmWorkerPool(new URL('./decode-thread.js', import.meta.url), 'decodeReturningBlob', { memory }),
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 30_000,
  });
  /** The thread's answer to `task`; a thread that dies is ERR_LR_DECODE_WORKER_DIED. */
  const answerOf = async (task: ChunkBlobTask, transferList: ArrayBuffer[] = []): Promise<DecodeAnswer> => {
    try {
      return (await pool.run(task, { transferList })) as DecodeAnswer;
    } catch (cause) {
      throw new ReaderError(
        'ERR_LR_DECODE_WORKER_DIED',
        `decode worker failed while decoding chunk ${task.digestHex}`,
        { cause },
      );
    }
  };
  /** Runs a task on a thread, moving the blob's memory there (see ChunkDecoder.decode). */
  const run = async (task: ChunkBlobTask, takeBlob: boolean): Promise<unknown> => {
    // The worker gets the blob's memory. Unless the caller gave it up and it is a whole
    // ArrayBuffer of its own, that is a copy (≈0.3 ms per 4 MiB): a source may keep its
    // blobs, and a view into a shared ArrayBuffer (Buffer pool) must never be transferred.
    const blob = task.blob;
    const pooled = takeBlob && blobs?.lent(blob) === true;
    const whole =
      pooled ||
      (takeBlob &&
        blob.buffer instanceof ArrayBuffer &&
        blob.byteOffset === 0 &&
        blob.byteLength === blob.buffer.byteLength);
    const moved = { ...task, blob: whole ? blob : new Uint8Array(blob) };
    const answer = await answerOf(moved, [moved.blob.buffer as ArrayBuffer]);
    if (pooled && answer.blobMemory !== undefined) blobs!.give(answer.blobMemory);
    return answer.result;
  };
  /** A task whose blob lies in shared memory the cache's thread still writes: nothing moves. */
  const runShared = async (task: ArrivingDecodeTask): Promise<DecodeResult | 'given up'> =>
    (await answerOf(task)).result as DecodeResult | 'given up';
  return {
    pool,
    threads,
    ...(canDecodeArriving() ? { decodeArriving: runShared } : {}),
    decode: async (task, takeBlob = false) => (await run(task, takeBlob)) as DecodeResult,
    decodeToFile: async (task, takeBlob = false) => (await run(task, takeBlob)) as FileDecodeResult,
    close: () => pool.destroy(),
  };
}
