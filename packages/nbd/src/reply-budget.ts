/**
 * The server-wide bound on reply memory. Every request is charged, before it is
 * dispatched, an upper bound of the bytes it pins until its reply has been handed to the
 * kernel: a read's buffer and reply header, a write's payload, an error message. The
 * charge is released by the socket's write callback (or when the connection closes). A
 * connection whose next request does not fit waits, first come first served, so however
 * many clients stop reading their replies, the server holds at most `limitBytes` of them
 * (a single request larger than the limit is let through alone, so it cannot deadlock).
 */
export class ReplyBudget {
  readonly limitBytes: number;
  #usedBytes = 0;
  readonly #waiters: { bytes: number; grant: (granted: boolean) => void }[] = [];

  constructor(limitBytes: number) {
    this.limitBytes = limitBytes;
  }

  /** Bytes charged and not yet released, over all connections. */
  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** Connections waiting for room. */
  get waiting(): number {
    return this.#waiters.length;
  }

  #fits(bytes: number): boolean {
    return this.#usedBytes === 0 || this.#usedBytes + bytes <= this.limitBytes;
  }

  /** Charges `bytes` at once and returns true when they fit and nobody waits before us. */
  tryAcquire(bytes: number): boolean {
    if (this.#waiters.length > 0 || !this.#fits(bytes)) return false;
    this.#usedBytes += bytes;
    return true;
  }

  /**
   * Resolves true once `bytes` are charged (in arrival order), or false when `signal`
   * aborts first (the connection closed or the server is stopping): nothing is charged then.
   */
  acquire(bytes: number, signal: AbortSignal): Promise<boolean> {
    if (this.tryAcquire(bytes)) return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const waiter = {
        bytes,
        grant: (granted: boolean) => {
          signal.removeEventListener('abort', cancel);
          resolve(granted);
        },
      };
      const cancel = (): void => {
        const k = this.#waiters.indexOf(waiter);
        if (k >= 0) this.#waiters.splice(k, 1);
        waiter.grant(false);
        this.#grant(); // the head may have changed
      };
      signal.addEventListener('abort', cancel, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Returns `bytes` charged earlier and lets waiting connections in. */
  release(bytes: number): void {
    this.#usedBytes -= bytes;
    this.#grant();
  }

  #grant(): void {
    for (let head = this.#waiters[0]; head !== undefined && this.#fits(head.bytes); head = this.#waiters[0]) {
      this.#waiters.shift();
      this.#usedBytes += head.bytes;
      head.grant(true);
    }
  }
}
