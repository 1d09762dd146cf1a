/** First size of the queue's buffer; it grows to the largest reply chunk waiting in it. */
const QUEUE_INITIAL_BYTES = 1024 * 1024;

/**
 * Received bytes not yet consumed, in one buffer the client owns and reuses. The socket
 * reads into a fixed buffer (`onread`) and each read is appended here, so receiving
 * allocates nothing: with a fresh buffer per socket read (a `data` listener), a client
 * reading at several hundred MB/s ran a full garbage collection every 40–50 ms.
 */
export class ByteQueue {
  #buffer = Buffer.allocUnsafe(QUEUE_INITIAL_BYTES);
  #head = 0;
  #tail = 0;

  get length(): number {
    return this.#tail - this.#head;
  }

  push(data: Uint8Array): void {
    if (this.#tail + data.byteLength > this.#buffer.length) this.#makeRoom(data.byteLength);
    this.#buffer.set(data, this.#tail);
    this.#tail += data.byteLength;
  }

  /** Moves the unconsumed bytes to the front, into a larger buffer when they and `n` more do not fit. */
  #makeRoom(n: number): void {
    const live = this.length;
    const target =
      live + n <= this.#buffer.length
        ? this.#buffer
        : Buffer.allocUnsafe(Math.max(2 * this.#buffer.length, live + n));
    this.#buffer.copy(target, 0, this.#head, this.#tail);
    this.#buffer = target;
    this.#head = 0;
    this.#tail = live;
  }

  /** Copies the next `n` bytes (n ≤ length) to `target` (or drops them) and consumes them. */
  take(n: number, target?: Uint8Array, at = 0): void {
    if (target !== undefined) target.set(this.#buffer.subarray(this.#head, this.#head + n), at);
    this.#head += n;
    if (this.#head === this.#tail) {
      this.#head = 0;
      this.#tail = 0;
      // A one-off huge reply (up to 32 MiB) does not pin its buffer for the connection's life.
      if (this.#buffer.length > 4 * QUEUE_INITIAL_BYTES)
        this.#buffer = Buffer.allocUnsafe(QUEUE_INITIAL_BYTES);
    }
  }

  /** The next `n` bytes as a new buffer, consumed. */
  read(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    this.take(n, out);
    return out;
  }

  /** A view of the next `n` bytes (n ≤ length), valid until the next push. */
  peek(n: number): Buffer {
    return this.#buffer.subarray(this.#head, this.#head + n);
  }
}
