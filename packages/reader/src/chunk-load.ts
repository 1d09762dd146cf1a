import { onAbort } from '@liverestore/format/internal';
import type { FetchHints } from './chunk-source.js';
import { abortError } from './errors.js';
import type { Lease } from './slot-table.js';

interface Waiter {
  resolve(lease: Lease): void;
  reject(err: unknown): void;
}

/**
 * A chunk being fetched and decoded, and the readers waiting for it: one load, any number
 * of waiters, each settled once (like a shared future). Aborting one waiter drops only
 * that waiter; the load goes on for the others. The load is also the live
 * {@link FetchHints} its fetch and decode read.
 */
export class ChunkLoad implements FetchHints {
  readonly #waiters = new Set<Waiter>();

  constructor(
    /** Plaintext length the index expects; every joiner must expect the same. */
    readonly length: number,
    /** A reader outside any sequential stream waits for it; raised when one joins, never lowered. */
    public urgent: boolean,
  ) {}

  /** A promise of a pinned lease for one more reader; `signal` rejects (and drops) only this one. */
  join(signal: AbortSignal | undefined): Promise<Lease> {
    return new Promise<Lease>((resolve, reject) => {
      // One listener per signal however many loads a read joins (onAbort shares it).
      const unregister =
        signal === undefined
          ? undefined
          : onAbort(signal, () => {
              if (this.#waiters.delete(waiter)) reject(abortError(signal));
            });
      const waiter: Waiter = {
        resolve: (lease) => {
          unregister?.();
          resolve(lease);
        },
        reject: (err) => {
          unregister?.();
          reject(err);
        },
      };
      this.#waiters.add(waiter);
    });
  }

  /** Gives every waiter its own lease (`pinnedLease()` pins once per call). */
  resolve(pinnedLease: () => Lease): void {
    for (const waiter of this.#waiters) waiter.resolve(pinnedLease());
  }

  /** Fails every waiter with `err`. */
  reject(err: unknown): void {
    for (const waiter of this.#waiters) waiter.reject(err);
  }
}
