import type { PageArena } from './page-arena.js';
import { kReleaseSeqField, type SlotIndex } from './slot-table.js';

/*
 * Memory waits of the cache: loads that need pages when every slot is pinned or loading
 * wait here, first come first served, and are served as readers release pins. A release
 * (in any thread) bumps the slot table's release sequence and notifies it; the queue waits
 * for that with `Atomics.waitAsync`, so it needs no callback from the threads that unpin.
 */

interface AllocationWaiter<Owner> {
  readonly pageCount: number;
  readonly owner: Owner;
  resolve(slot: SlotIndex): void;
  reject(err: unknown): void;
}

/**
 * FIFO allocation of arena slots. `Owner` is what the cache tracks per allocation (its
 * load); `onGrant(owner)` runs the moment a waiter gets its slot, before its promise
 * settles, so the cache sees the load as on its way at once.
 */
export class AllocationQueue<Owner> {
  readonly #arena: PageArena;
  readonly #onGrant: (owner: Owner) => void;
  readonly #waiters: AllocationWaiter<Owner>[] = [];
  #waitingForRelease = false;
  #closed = false;
  /** Allocations that had to wait (the cache's `memoryWaits`). */
  waits = 0;

  constructor(arena: PageArena, onGrant: (owner: Owner) => void) {
    this.#arena = arena;
    this.#onGrant = onGrant;
  }

  /** Allocations waiting for memory. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * A slot of `pageCount` pages: at once when nobody waits and the arena has room (after
   * evicting), else once every earlier waiter was served and enough pins were released.
   */
  allocate(pageCount: number, owner: Owner, closedError: () => Error): Promise<SlotIndex> {
    if (this.#waiters.length === 0) {
      const slot = this.#arena.tryAllocate(pageCount);
      if (slot !== undefined) return Promise.resolve(slot);
    }
    if (this.#closed) return Promise.reject(closedError());
    this.waits++;
    return new Promise<SlotIndex>((resolve, reject) => {
      this.#waiters.push({ pageCount, owner, resolve, reject });
      this.pump();
    });
  }

  /** Serves waiting allocations in order; arms a wait for the next unpin if the head cannot be served. */
  pump(): void {
    const header = this.#arena.table.header;
    while (this.#waiters.length > 0 && !this.#closed) {
      const seq = Atomics.load(header, kReleaseSeqField);
      const head = this.#waiters[0]!;
      const slot = this.#arena.tryAllocate(head.pageCount);
      if (slot === undefined) {
        this.#arena.startSavesFor(this.#waiters.reduce((pages, waiter) => pages + waiter.pageCount, 0));
        this.#waitForRelease(seq);
        return;
      }
      this.#waiters.shift();
      this.#onGrant(head.owner);
      head.resolve(slot);
    }
  }

  /** Rejects every waiter with `err` and stops; later allocations that would wait reject too. */
  close(err: () => Error): void {
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(err());
    // Ends a pending waitAsync, so nothing of the queue outlives the cache.
    Atomics.notify(this.#arena.table.header, kReleaseSeqField);
  }

  #waitForRelease(seq: number): void {
    if (this.#waitingForRelease) return;
    const result = waitAsync(this.#arena.table.header, kReleaseSeqField, seq);
    if (!result.async) {
      queueMicrotask(() => this.pump());
      return;
    }
    this.#waitingForRelease = true;
    void result.value.then(() => {
      this.#waitingForRelease = false;
      this.pump();
    });
  }
}

/** `Atomics.waitAsync` (ES2024; in Node.js since 16) without raising the project's lib to ES2024. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      array: Int32Array,
      index: number,
      value: number,
    ): { async: false; value: string } | { async: true; value: Promise<string> };
  }
).waitAsync;
