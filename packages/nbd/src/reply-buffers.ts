/**
 * Reusable read-reply buffers in power-of-two sizes from 64 KiB to 4 MiB (the 512 KiB
 * reads of a block-stream job, the 2 MiB of qemu-img convert). A fresh buffer per large
 * read is off-heap memory that only a garbage collection returns: at a few hundred MB/s
 * that was a fifth of the event loop and a peak RSS that grew with the clients. A buffer
 * comes back only when nothing refers to it any more (its socket write completed, or it
 * was copied into a coalesced reply); the pool keeps at most 32 MiB.
 */
export class ReplyBuffers {
  static readonly MIN = 64 * 1024;
  static readonly MAX = 4 * 1024 * 1024;
  static readonly KEEP_BYTES = 32 * 1024 * 1024;
  readonly #free = new Map<number, Buffer[]>();
  #keptBytes = 0;

  /** A buffer of exactly `length` bytes (contents unspecified). */
  take(length: number): Buffer {
    if (length < ReplyBuffers.MIN || length > ReplyBuffers.MAX) return Buffer.allocUnsafe(length);
    const size = 2 ** Math.ceil(Math.log2(length));
    const whole = this.#free.get(size)?.pop();
    if (whole !== undefined) this.#keptBytes -= size;
    return (whole ?? Buffer.allocUnsafeSlow(size)).subarray(0, length);
  }

  /** Returns a buffer from {@link take} that nothing uses any more (others are ignored). */
  give(buffer: Buffer): void {
    const size = buffer.buffer.byteLength;
    if (
      buffer.byteOffset !== 0 ||
      size < ReplyBuffers.MIN ||
      size > ReplyBuffers.MAX ||
      (size & (size - 1)) !== 0 ||
      this.#keptBytes + size > ReplyBuffers.KEEP_BYTES
    )
      return;
    const list = this.#free.get(size) ?? [];
    this.#free.set(size, list);
    list.push(Buffer.from(buffer.buffer, 0, size));
    this.#keptBytes += size;
  }
}
