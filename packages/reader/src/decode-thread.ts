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
 * moved, not copied; once decoded it was garbage there, and a decode thread allocates
 * almost nothing on its JS heap, so its collector ran only when V8's external memory limit
 * was reached: up to ≈ 64 MiB of decoded blobs per thread stayed resident
 * (docs/benchmarks.md, "40 restores at once"). Moved back, the buffer receives the next
 * blob (blob-buffers.ts).
 */

/** What the pool resolves with: the decode's answer and the blob's memory, moved back. */
export interface DecodeAnswer {
  readonly answer: DecodeResult | FileDecodeResult;
  readonly buffer: ArrayBuffer | undefined;
}

/** Piscina entry point (named export, selected with `name: 'decodeReturningBlob'`). */
export function decodeReturningBlob(task: DecodeTask | FileDecodeTask): unknown {
  const answer = decode(task);
  const buffer = task.blob.buffer;
  // Only memory this thread owns can go back (a shared buffer is never moved).
  if (!(buffer instanceof ArrayBuffer)) return { answer, buffer: undefined } satisfies DecodeAnswer;
  // piscina's Transferable: what to move, and the value the pool resolves with. Its type
  // names the symbols piscina keeps private; these are the same (Symbol.for).
  const movable = { [Piscina.transferableSymbol]: buffer, [Piscina.valueSymbol]: { answer, buffer } };
  return Piscina.move(movable as unknown as Parameters<typeof Piscina.move>[0]);
}
