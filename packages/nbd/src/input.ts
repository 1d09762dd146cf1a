import type { Socket } from 'node:net';

/** Bytes of unread input kept before the socket is paused. */
const INPUT_HIGH_WATER = 1024 * 1024;

/** The peer closed, or the server is closing: the connection's input has ended. */
export class ConnectionClosed extends Error {}

/**
 * Buffered input of a socket with `read(n)` that resolves once n bytes arrived. Input is
 * bounded: the socket is paused while more than 1 MiB waits, so a client that floods
 * requests is throttled by TCP, not by our memory.
 */
export class Input {
  readonly #socket: Socket;
  #chunks: Buffer[] = [];
  #length = 0;
  #ended = false;
  #interrupted = false;
  #wake: (() => void) | undefined;

  readonly #onData = (data: Buffer): void => {
    this.#chunks.push(data);
    this.#length += data.length;
    if (this.#length >= INPUT_HIGH_WATER) this.#socket.pause();
    this.#notify();
  };
  readonly #onEnd = (): void => {
    this.#ended = true;
    this.#notify();
  };

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
  }

  /**
   * Stops reading the socket (for STARTTLS: what comes next is the TLS handshake, which
   * the TLS layer reads). Returns the bytes already buffered: none, unless the client
   * sent more than it may before the server's answer.
   */
  detach(): Buffer {
    this.#socket.pause();
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onEnd);
    this.#socket.off('close', this.#onEnd);
    const rest = Buffer.concat(this.#chunks);
    this.#chunks = [];
    this.#length = 0;
    return rest;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Makes a waiting (and any later waiting) read fail: the server is closing. */
  interrupt(): void {
    this.#interrupted = true;
    this.#notify();
  }

  async #waitFor(n: number): Promise<void> {
    while (this.#length < n) {
      if (this.#ended) throw new ConnectionClosed('connection closed by the client');
      if (this.#interrupted) throw new ConnectionClosed('server closing');
      this.#socket.resume();
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** The next `n` bytes (n ≤ a bound the caller enforces). */
  async read(n: number): Promise<Buffer> {
    await this.#waitFor(n);
    return this.tryRead(n)!;
  }

  /** The next `n` bytes if they have arrived, without waiting; undefined otherwise. */
  tryRead(n: number): Buffer | undefined {
    if (this.#length < n) return undefined;
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#length = rest.length;
    if (this.#length < INPUT_HIGH_WATER && !this.#ended) this.#socket.resume();
    return out;
  }

  /** Discards `n` bytes without keeping them (write payloads we refuse). */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      await this.#waitFor(1);
      const take = Math.min(left, this.#length, INPUT_HIGH_WATER);
      await this.read(take);
      left -= take;
    }
  }
}
