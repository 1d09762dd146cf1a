import { type Clock, sleep, systemClock } from '@liverestore/format/internal';

/** Small scheduling pieces of the live restore: per-region locks, guest priority, a rate limit. */

// The clock, sleep and semaphore are the repository's shared ones; re-exported as part of
// this package's internal entry (LiveDriveOptions.fillSlots takes a Semaphore, tests inject a Clock).
export { type Clock, Semaphore, sleep, systemClock } from '@liverestore/format/internal';

/** The longest timer Node.js keeps (2^31 - 1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One mutex per region, created on demand. The background copy, copy-on-read fills and
 * guest writes of a region all take its lock, so they never interleave on one region.
 * Waiters are served in arrival order.
 */
export class RegionLocks {
  readonly #tails = new Map<number, Promise<void>>();

  /** Resolves with the release function once the caller holds region `i`. */
  acquire(i: number): Promise<() => void> {
    const previous = this.#tails.get(i) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.#tails.set(i, tail);
    return previous.then(() => () => {
      release();
      if (this.#tails.get(i) === tail) this.#tails.delete(i);
    });
  }

  /** Regions held or waited for now. */
  get size(): number {
    return this.#tails.size;
  }

  /** Resolves once no region is held (new acquisitions during the wait are waited for too). */
  async idle(): Promise<void> {
    while (this.#tails.size > 0) await Promise.all([...this.#tails.values()]);
  }
}

/**
 * Guest requests that need the backup (copy-on-read, fill before a partial write) count
 * as busy; the background copy starts a region only when none is in flight, or after
 * waiting `maxWaitMs` (so a guest that keeps missing cannot starve the copy forever).
 */
export class GuestPriority {
  #busy = 0;
  #waiters: (() => void)[] = [];

  readonly #clock: Clock;

  constructor(
    readonly maxWaitMs = 200,
    clock: Clock = systemClock,
  ) {
    this.#clock = clock;
  }

  enter(): void {
    this.#busy++;
  }

  leave(): void {
    this.#busy--;
    if (this.#busy === 0) for (const wake of this.#waiters.splice(0)) wake();
  }

  get busy(): number {
    return this.#busy;
  }

  /** Resolves when no guest fill is in flight, or after `maxWaitMs`. */
  async idle(signal?: AbortSignal): Promise<void> {
    if (this.#busy === 0) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        cancel();
        signal?.removeEventListener('abort', done);
        const at = this.#waiters.indexOf(done);
        if (at >= 0) this.#waiters.splice(at, 1);
        resolve();
      };
      const cancel = this.#clock.setTimer(done, this.maxWaitMs);
      signal?.addEventListener('abort', done, { once: true });
      this.#waiters.push(done);
    });
  }
}

/**
 * A token bucket in bytes per second shared by every copy job of a restore. A take larger
 * than the bucket is allowed and paid back (the balance goes negative and later takes
 * wait), so one 4 MiB region under a 1 MB/s limit still makes progress.
 */
export class TokenBucket {
  readonly #rate: number;
  readonly #burst: number;
  readonly #clock: Clock;
  #tokens: number;
  #at: number;
  #queue: Promise<void> = Promise.resolve();

  constructor(bytesPerSecond: number, burstBytes = bytesPerSecond / 4, clock: Clock = systemClock) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond))
      throw new RangeError('rate limit must be a positive number of bytes per second');
    this.#rate = bytesPerSecond;
    this.#burst = Math.max(1, burstBytes);
    this.#tokens = this.#burst;
    this.#clock = clock;
    this.#at = clock.now();
  }

  get bytesPerSecond(): number {
    return this.#rate;
  }

  #refill(): void {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
  }

  /** Waits (in FIFO order) until `bytes` may be spent. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    const turn = this.#queue.then(async () => {
      for (;;) {
        signal?.throwIfAborted();
        this.#refill();
        if (this.#tokens >= 0) {
          this.#tokens -= bytes;
          return;
        }
        // At least 1 ms (what a real timer waits anyway): a debt of a rounding error must
        // not turn into timers of 0 ms that see no time pass. At most what a Node timer
        // holds: a longer one fires at once with a TimeoutOverflowWarning (a tiny rate
        // and a 4 MiB region make such debts); the loop just waits again.
        const waitMs = Math.min(MAX_TIMER_MS, Math.max(1, (-this.#tokens / this.#rate) * 1000));
        await sleep(waitMs, signal, this.#clock);
      }
    });
    this.#queue = turn.catch(() => undefined);
    return turn;
  }
}
