import { type BodyMemory, onAbort } from '@liverestore/format/internal';
import type { FetchHints } from './chunk-source.js';
import { abortError } from './errors.js';
import { LoadTimeline } from './load-record.js';
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
  readonly #urgencyListeners = new Set<() => void>();
  #urgent: boolean;
  /** Urgent when the load began (see {@link ChunkLoadRecord}). */
  readonly urgentAtStart: boolean;
  /** When the load reached each phase. */
  readonly timeline = new LoadTimeline();

  constructor(
    /** Plaintext length the index expects; every joiner must expect the same. */
    readonly length: number,
    urgent: boolean,
    /** Memory for the chunk's blob (the cache's blob pool), handed to the source as a hint. */
    readonly blobMemory?: BodyMemory,
  ) {
    this.#urgent = urgent;
    this.urgentAtStart = urgent;
  }

  /** Called by the decode scheduler when a thread takes this load's blob. */
  decodeStarted(): void {
    this.timeline.decodeStarted();
  }

  /** A reader outside any sequential stream waits for it; raised when one joins, never lowered. */
  get urgent(): boolean {
    return this.#urgent;
  }

  /** A reader outside any sequential stream joined: the load is urgent from now on, and its fetch hears so. */
  raiseUrgency(): void {
    if (this.#urgent) return;
    this.#urgent = true;
    this.timeline.urgent();
    for (const listener of [...this.#urgencyListeners]) listener();
    this.#urgencyListeners.clear();
  }

  onUrgent(listener: () => void): () => void {
    if (this.#urgent) return () => {};
    this.#urgencyListeners.add(listener);
    return () => this.#urgencyListeners.delete(listener);
  }

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
