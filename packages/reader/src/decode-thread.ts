import { Piscina } from 'piscina';
import {
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
 * (docs/benchmarks.md, "Where a reader process's memory goes"). Moved back, the blob dies
 * on the cache's thread, whose collector runs every few milliseconds under load.
 */

/** Piscina entry point (named export, selected with `name: 'decodeReturningBlob'`). */
export function decodeReturningBlob(task: DecodeTask | FileDecodeTask): unknown {
  const result: DecodeResult | FileDecodeResult = decode(task);
  const buffer = task.blob.buffer;
  // Only memory this thread owns whole can go back (a shared buffer is never moved).
  if (!(buffer instanceof ArrayBuffer) || task.blob.byteLength !== buffer.byteLength) return result;
  // piscina's Transferable: what to move, and the answer the pool resolves with. Its type
  // names the symbols piscina keeps private; these are the same (Symbol.for).
  const movable = { [Piscina.transferableSymbol]: buffer, [Piscina.valueSymbol]: result };
  return Piscina.move(movable as unknown as Parameters<typeof Piscina.move>[0]);
}
