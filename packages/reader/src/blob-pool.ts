/*
 * Memory for chunk blobs between fetch and decode, used again and again. A fetch reads
 * its blob into an array the pool hands out (`FetchHints.blobMemory`); the decode pool
 * moves that array's memory to a decode thread and back with the answer (decoder.ts,
 * decode-thread.ts), and the pool keeps it for a later fetch. Without it every fetch
 * allocated a fresh 1–4 MiB ArrayBuffer: zeroed, faulted in page by page, then left to
 * the collector, whose full collections it drove (docs/benchmarks.md, "Blob memory used
 * again").
 *
 * Buffers come in capacity classes (a blob's largest size for its chunk length, rounded up
 * to 64 KiB), so one buffer serves every blob of chunks of that length, and the free
 * buffers kept hold `maxFreeBytes` at most (the blob budget: no more than could be in
 * flight at once). Memory it did not hand out, or that never comes back (a failed fetch),
 * is simply not kept.
 */

/** Blobs smaller than this are allocated fresh: small buffers cost the collector little. */
export const MIN_POOLED_BYTES = 64 * 1024;
/** Capacity classes are multiples of this. */
export const CLASS_BYTES = 64 * 1024;

export class BlobPool {
  /** Free buffers by capacity, the most recently returned last. */
  readonly #free = new Map<number, ArrayBuffer[]>();
  /** Buffers handed out and not moved away yet (identity holds until a transfer). */
  readonly #lent = new WeakSet<ArrayBufferLike>();
  #freeBytes = 0;
  /** Buffers handed out that were free ones (not new): for tests and benchmarks. */
  reused = 0;

  /** @param maxFreeBytes the free buffers kept hold at most this many bytes. */
  constructor(readonly maxFreeBytes: number) {}

  /** Bytes held by free buffers now. */
  get freeBytes(): number {
    return this.#freeBytes;
  }

  /**
   * An array of exactly `bytes` for a blob of a chunk whose blobs hold at most
   * `chargeBytes` (see blobChargeBytes): a view of a pooled buffer, or a fresh array for a
   * small blob or one larger than its chunk allows.
   */
  take(bytes: number, chargeBytes: number): Uint8Array {
    if (bytes < MIN_POOLED_BYTES || bytes > chargeBytes) return new Uint8Array(bytes);
    const capacity = Math.ceil(chargeBytes / CLASS_BYTES) * CLASS_BYTES;
    const buffer = this.#free.get(capacity)?.pop();
    if (buffer !== undefined) {
      this.#freeBytes -= buffer.byteLength;
      this.reused++;
    }
    const memory = buffer ?? new ArrayBuffer(capacity);
    this.#lent.add(memory);
    return new Uint8Array(memory, 0, bytes);
  }

  /**
   * Whether `blob` lies in a buffer this pool handed out and that has not moved since:
   * then its whole buffer may move to a decode thread and come back to {@link give}.
   */
  lent(blob: Uint8Array): boolean {
    return this.#lent.has(blob.buffer);
  }

  /**
   * Takes back a buffer this pool handed out, once its blob is decoded (moved back from a
   * thread it is another object of the same memory): kept while the free buffers stay
   * within `maxFreeBytes` and its size is a capacity class, else left to the collector.
   */
  give(buffer: ArrayBuffer): void {
    const capacity = buffer.byteLength;
    if (capacity % CLASS_BYTES !== 0 || this.#freeBytes + capacity > this.maxFreeBytes) return;
    let free = this.#free.get(capacity);
    if (free === undefined) {
      free = [];
      this.#free.set(capacity, free);
    }
    free.push(buffer);
    this.#freeBytes += capacity;
  }
}
