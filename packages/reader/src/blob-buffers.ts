/*
 * Buffers that chunk blobs are received into, used again and again instead of allocated
 * per blob. A blob's buffer lives from its fetch until its decode ends, long enough to be
 * promoted to V8's old generation, which is collected only when the process's external
 * memory has grown by tens of MiB: a new 4 MiB buffer per blob kept ≈ 50–90 MiB of dead
 * blobs resident in a reader process (docs/benchmarks.md, "40 restores at once"). Here a
 * buffer goes back to the cache with the decode's answer (decode-thread.ts moves it back)
 * and receives the next blob.
 *
 * Free buffers are kept while they and the blobs in use stay within the blob budget
 * (`keepBytes()`: the budget less what it holds now). A buffer comes back while its load
 * still holds its charge (no smaller than the buffer), so it is kept when the free ones
 * fit in `keepBytes()` before it: once that charge is released, blob memory, free or in
 * use, is within the budget however many chunks pass.
 */

/** A pool of blob buffers: best fit among the free ones, else a new one of the size asked for. */
export class BlobBuffers {
  readonly #keepBytes: () => number;
  readonly #free: ArrayBuffer[] = [];
  #freeBytes = 0;
  /** Buffers allocated so far (each one new memory; the rest were used again). */
  allocated = 0;
  /** Buffers handed out by {@link take} and given back by {@link give}: the cache's to move to a decode thread. */
  readonly #ours = new WeakSet<ArrayBuffer>();

  /** @param keepBytes how many free bytes may be kept now, beside the charges held */
  constructor(keepBytes: () => number) {
    this.#keepBytes = keepBytes;
  }

  /** Free bytes kept now. */
  get freeBytes(): number {
    return this.#freeBytes;
  }

  /**
   * A view of exactly `bytes` at the start of a buffer of at least `capacityBytes` (the
   * most a blob of its chunk can take, so that the buffer serves any later blob of that
   * size): the smallest free one that is big enough, else a new one.
   */
  take(bytes: number, capacityBytes = bytes): Uint8Array {
    const want = Math.max(bytes, capacityBytes);
    let best = -1;
    for (let i = 0; i < this.#free.length; i++) {
      const size = this.#free[i]!.byteLength;
      if (size >= want && (best < 0 || size < this.#free[best]!.byteLength)) best = i;
    }
    let buffer: ArrayBuffer;
    if (best < 0) {
      buffer = new ArrayBuffer(want);
      this.allocated++;
      this.#ours.add(buffer);
    } else {
      buffer = this.#free.splice(best, 1)[0]!;
      this.#freeBytes -= buffer.byteLength;
    }
    return new Uint8Array(buffer, 0, bytes);
  }

  /** True when `buffer` came from {@link take}: nobody else holds it, so it may be moved. */
  owns(buffer: ArrayBufferLike): boolean {
    return buffer instanceof ArrayBuffer && this.#ours.has(buffer);
  }

  /**
   * Takes back a buffer nobody uses any more (a blob's memory back from a decode thread);
   * dropped, for the collector, when the free ones already take more than `keepBytes()` (the charge
   * of its own load, still held, stands for the buffer itself).
   */
  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === 0 || this.#freeBytes > this.#keepBytes()) return;
    this.#ours.add(buffer);
    this.#free.push(buffer);
    this.#freeBytes += buffer.byteLength;
  }
}
