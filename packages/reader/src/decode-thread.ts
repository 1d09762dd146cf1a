import { Piscina } from 'piscina';
import {
  type ArrivingDecodeTask,
  type DecodeResult,
  type DecodeTask,
  decode,
  type FileDecodeResult,
  type FileDecodeTask,
} from './decode-worker.js';

/*
 * The decode pool's entry (poolDecoder in decoder.ts): decode a task (decode-worker.ts),
 * then send the blob's memory back with the answer. A blob comes to a decode thread
 * transferred (moved, not copied); once decoded it is garbage there, but a decode thread
 * allocates almost nothing on its JS heap, so its collector ran only when V8's external
 * memory limit was reached: up to ≈ 64 MiB of decoded blobs per thread stayed resident
 * (docs/benchmarks.md, "Where a reader process's memory goes"). Moved back, the blob's
 * memory goes to the cache's blob pool to hold the next blob (blob-pool.ts), or dies on
 * the cache's thread, whose collector runs every few milliseconds under load.
 */

/** What a decode answers: its result, and the blob's memory when it moved back. */
export interface DecodeAnswer {
  readonly result: DecodeResult | FileDecodeResult | 'given up';
  readonly blobMemory?: ArrayBuffer;
}

/** Piscina entry point (named export, selected with `name: 'decodeReturningBlob'`). */
export function decodeReturningBlob(task: DecodeTask | ArrivingDecodeTask | FileDecodeTask): unknown {
  const result = decode(task);
  const buffer = task.blob.buffer;
  // The thread owns a non-shared buffer whole (it came moved, or as a copy), whatever part
  // of it the blob is; a shared buffer is never moved.
  if (!(buffer instanceof ArrayBuffer)) return { result } satisfies DecodeAnswer;
  // piscina's Transferable: what to move, and the answer the pool resolves with. Its type
  // names the symbols piscina keeps private; these are the same (Symbol.for).
  const answer: DecodeAnswer = { result, blobMemory: buffer };
  const movable = { [Piscina.transferableSymbol]: buffer, [Piscina.valueSymbol]: answer };
  return Piscina.move(movable as unknown as Parameters<typeof Piscina.move>[0]);
}
