import { writeSync } from 'node:fs';
import type { StagedTarget } from './staged-writes.js';

/** Granularity of holes inside a chunk: zero runs this long and aligned are not written. */
export const HOLE_BYTES = 64 * 1024;
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

/**
 * Where a decoded chunk goes instead of a cache slot: written to the output file by the
 * decode thread, or staged in shared memory for the restoring thread to write with
 * O_DIRECT (staged-writes.ts).
 */
export type FileTarget = WriteTarget | StagedTarget;

/**
 * An output file open for writing in this process (file descriptors are shared by all its
 * threads), at every offset where the chunk occurs in the image. The owner keeps `fd` open
 * until the decode has answered.
 */
export interface WriteTarget {
  readonly fd: number;
  /** Byte offsets in the file, one per occurrence of the chunk in the index. */
  readonly offsets: readonly number[];
  /** Leave all-zero 64 KiB blocks unwritten (a fresh regular file); false for a block device. */
  readonly sparse: boolean;
}

/**
 * Writes `data` at every offset of `target` (synchronously: this runs on a decode thread,
 * where nothing else waits) and returns the bytes written, holes not counted.
 */
export function writeToTarget(data: Buffer, target: WriteTarget): number {
  const extents: ReadonlyArray<readonly [number, number]> = target.sparse
    ? dataExtents(data)
    : [[0, data.byteLength]];
  let total = 0;
  for (const offset of target.offsets) {
    for (const [from, to] of extents) {
      for (let at = from; at < to; ) at += writeSync(target.fd, data, at, to - at, offset + at);
      total += to - from;
    }
  }
  return total;
}
