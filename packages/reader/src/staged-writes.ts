/*
 * Restore writes past the page cache (O_DIRECT), for restoreArchive.
 *
 * A buffered write copies every restored byte into page-cache pages the kernel takes from
 * its free memory. Where the machine is a VM that returns free memory to its host
 * (virtio-balloon free page reporting), each such page costs a fault in the host on first
 * touch: measured here, 1.6 GiB written into fresh page cache took 3.7 CPU s in the
 * kernel, the same bytes overwritten in cached pages 0.17 s (docs/benchmarks.md). A
 * restore writes gigabytes once, so it writes them with O_DIRECT from staging memory that
 * is reused for every chunk:
 *
 *   staging: one shared WebAssembly.Memory (page-aligned, as O_DIRECT needs), one slot per lane
 *   ┌──── slot 0 (lane 0) ────┬──── slot 1 (lane 1) ────┬ …
 *   │ plaintext of the chunk, │                         │
 *   │ at its own offsets      │                         │
 *   └─────────────────────────┴─────────────────────────┴
 *   extents: one Int32Array on a SharedArrayBuffer, per slot [count, from0, to0, from1, to1, …]
 *
 * A decode thread verifies a chunk and copies its data extents (all but all-zero 64 KiB
 * blocks) into its lane's slot (`stageChunk`); the restoring thread then has libuv write
 * them at every offset where the chunk occurs (`DirectWriter.write`), so decode threads
 * never wait for the device and the bytes never reach JavaScript on that thread. Pieces
 * that O_DIRECT cannot take (a file offset or length that is not a multiple of 4096: the
 * tail of an image, chunks of a dynamic index) go through the ordinary descriptor.
 */

import type { FileHandle } from 'node:fs/promises';
import { dataExtents, HOLE_BYTES } from './data-extents.js';
import {
  DirectDescriptor,
  directPrefixBytes,
  pageAlignedSharedBuffer,
  WASM_PAGE_BYTES,
} from './direct-io.js';

export { DIRECT_ALIGN_BYTES } from './direct-io.js';

/** Where a decode thread puts a verified chunk for its owner to write: a slot of the staging memory. */
export interface StagedTarget {
  /** The slot (a view on shared memory): the chunk's data extents at their own offsets. */
  readonly staging: Uint8Array;
  /** The slot's extent list: `[count, from0, to0, …]`, filled by {@link stageChunk}. */
  readonly extents: Int32Array;
  /** Leave all-zero 64 KiB blocks out (a fresh regular file); false for a block device. */
  readonly sparse: boolean;
}

/**
 * Copies the data extents of a verified chunk into its slot and lists them there; returns
 * the bytes staged. Runs on a decode thread.
 */
export function stageChunk(data: Buffer, target: StagedTarget): number {
  const extents: ReadonlyArray<readonly [number, number]> = target.sparse
    ? dataExtents(data)
    : [[0, data.byteLength]];
  if (data.byteLength > target.staging.byteLength || 1 + 2 * extents.length > target.extents.length) {
    throw new RangeError(`a ${data.byteLength}-byte chunk does not fit its staging slot`);
  }
  let total = 0;
  target.extents[0] = extents.length;
  extents.forEach(([from, to], i) => {
    target.staging.set(data.subarray(from, to), from);
    target.extents[1 + 2 * i] = from;
    target.extents[2 + 2 * i] = to;
    total += to - from;
  });
  return total;
}

/**
 * The restoring thread's side: a second descriptor of the output opened with O_DIRECT,
 * the staging memory, and the writes of staged chunks. {@link open} answers undefined
 * where the file system refuses O_DIRECT (tmpfs): then the decode threads write through
 * the page cache as before.
 */
export class DirectWriter {
  readonly #direct: DirectDescriptor;
  readonly #buffered: FileHandle;
  readonly #memory: SharedArrayBuffer;
  readonly #extents: Int32Array;
  readonly #slotBytes: number;
  readonly #extentInts: number;
  private constructor(direct: DirectDescriptor, buffered: FileHandle, slots: number, chunkBytes: number) {
    this.#direct = direct;
    this.#buffered = buffered;
    this.#slotBytes = Math.ceil(Math.max(chunkBytes, 1) / WASM_PAGE_BYTES) * WASM_PAGE_BYTES;
    const pages = (slots * this.#slotBytes) / WASM_PAGE_BYTES;
    this.#memory = pageAlignedSharedBuffer(pages * WASM_PAGE_BYTES).buffer;
    this.#extentInts = 1 + 2 * Math.ceil(this.#slotBytes / HOLE_BYTES);
    this.#extents = new Int32Array(new SharedArrayBuffer(4 * slots * this.#extentInts));
  }

  /**
   * Opens `path` (already open as `buffered`) again with O_DIRECT and sets up `slots`
   * staging slots of `chunkBytes` (the largest chunk); undefined where O_DIRECT is refused.
   * `openDirect` is the fault seam of tests (a descriptor the kernel already refused).
   */
  static async open(
    path: string,
    buffered: FileHandle,
    slots: number,
    chunkBytes: number,
    openDirect: (path: string) => DirectDescriptor | undefined = DirectDescriptor.open,
  ): Promise<DirectWriter | undefined> {
    const direct = openDirect(path);
    return direct === undefined ? undefined : new DirectWriter(direct, buffered, slots, chunkBytes);
  }

  /** Bytes written with O_DIRECT so far. */
  get directBytes(): number {
    return this.#direct.bytes;
  }

  /** The target a decode thread stages a chunk into: slot `slot`. */
  target(slot: number, sparse: boolean): StagedTarget {
    return {
      staging: new Uint8Array(this.#memory, slot * this.#slotBytes, this.#slotBytes),
      extents: new Int32Array(this.#extents.buffer, 4 * slot * this.#extentInts, this.#extentInts),
      sparse,
    };
  }

  /** Writes what is staged in slot `slot` at every one of `offsets`; the bytes written. */
  async write(slot: number, offsets: readonly number[]): Promise<number> {
    const { staging, extents } = this.target(slot, true);
    const count = extents[0]!;
    let total = 0;
    for (const offset of offsets) {
      for (let i = 0; i < count; i++) {
        const from = extents[1 + 2 * i]!;
        const to = extents[2 + 2 * i]!;
        const start = offset + from;
        const aligned = directPrefixBytes(start, to - from);
        // What O_DIRECT does not take (refused, or a short write left unaligned): buffered.
        const done =
          aligned > 0 ? await this.#direct.writeAll([staging.subarray(from, from + aligned)], start) : 0;
        await writeAll(this.#buffered, staging, from + done, to - from - done, start + done);
        total += to - from;
      }
    }
    return total;
  }

  async close(): Promise<void> {
    this.#direct.close();
  }
}

async function writeAll(
  handle: FileHandle,
  data: Uint8Array,
  from: number,
  length: number,
  position: number,
): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesWritten } = await handle.write(data, from + done, length - done, position + done);
    done += bytesWritten;
  }
}
