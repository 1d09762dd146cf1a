import { ENCRYPTED_BLOB_HEADER_BYTES } from '@liverestore/format/internal';

/*
 * Memory of chunk blobs between fetch and decode. A load reserves its blob's bytes (the
 * chunk's plaintext length plus the largest blob header: no stored blob is bigger) before
 * its fetch starts and gives them back once its decode has finished, so the blobs that are
 * on their way, waiting for a decode thread or being decoded never hold more than the
 * budget, however many readers miss at once. Without it, every load that has pages fetches
 * at once, and with one decode thread the blobs pile up on the main thread (a few MiB per
 * waiting reader: docs/benchmarks.md, "Where a reader process's memory goes").
 *
 * Urgent loads (a guest waits) never wait behind background blobs: background charges stop
 * at {@link BACKGROUND_BLOB_SHARE} of the budget, so the rest is always there for urgent
 * ones, and waiting urgent charges are served before any background one.
 *
 * No deadlock: a load reserves blob bytes only after it has its cache pages, and a holder
 * of blob bytes never waits for pages, only for its fetch and a decode thread (the decode
 * scheduler holds background decodes only for urgent loads that hold blob bytes, see
 * {@link BlobBudget.isWaiting}). A charge bigger than its share goes when no other charge
 * of its kind is held, so a chunk larger than the budget still loads.
 */

/** Background blobs never hold more than this share of the budget; the rest is for urgent loads. */
export const BACKGROUND_BLOB_SHARE = 0.75;

/** Bytes a chunk's blob can take at most: its plaintext (stored uncompressed) behind the largest header. */
export function blobChargeBytes(plaintextLength: number): number {
  return plaintextLength + ENCRYPTED_BLOB_HEADER_BYTES;
}

/** The default budget: a blob decoding, one waiting and one on the wire per decode thread, plus one more. */
export function defaultBlobBudgetBytes(decodeThreads: number): number {
  return blobChargeBytes(4 * 1024 * 1024) * (2 * Math.max(1, decodeThreads) + 2);
}

/** What the budget reads of a charge's owner (a load): whether a reader outside any stream waits for it (live). */
export interface BlobPriority {
  readonly urgent: boolean;
}

interface BlobWaiter {
  readonly bytes: number;
  readonly owner: BlobPriority;
  resolve(release: () => void): void;
  reject(err: unknown): void;
}

/**
 * A byte budget with two kinds of charges: background ones up to a share of it, urgent
 * ones up to all of it and served first. A waiter's kind is read live: a background load
 * that a waiting reader joins turns urgent while it waits (call {@link pump} then).
 */
export class BlobBudget {
  readonly capacityBytes: number;
  readonly #backgroundBytes: number;
  readonly #waiters: BlobWaiter[] = [];
  #heldBytes = 0;
  #urgentHeldBytes = 0;
  #closed = false;
  /** The most held at once since creation (the cache's `peakBlobBytes`). */
  peakBytes = 0;

  constructor(capacityBytes: number) {
    this.capacityBytes = capacityBytes;
    this.#backgroundBytes = Math.floor(capacityBytes * BACKGROUND_BLOB_SHARE);
  }

  /** Bytes reserved now (blobs on their way, waiting for a thread or decoding). */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** True while an urgent charge waits here: a reader waits for blob bytes now. */
  get urgentWaiting(): boolean {
    return this.#waiters.some((w) => w.owner.urgent);
  }

  /** True while `owner` waits here (its fetch has not started). */
  isWaiting(owner: BlobPriority): boolean {
    return this.#waiters.some((w) => w.owner === owner);
  }

  /**
   * Reserves `bytes` for `owner`'s blob: resolves with its release (call it exactly once,
   * when the decode has finished or the fetch failed). Waits while the bytes do not fit.
   */
  reserve(bytes: number, owner: BlobPriority, closedError: () => Error): Promise<() => void> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      this.#waiters.push({ bytes, owner, resolve, reject });
      this.pump();
    });
  }

  /** Serves waiters, urgent ones first (each kind in arrival order), while the next one fits. */
  pump(): void {
    while (!this.#closed && this.#waiters.length > 0) {
      const urgentAt = this.#waiters.findIndex((w) => w.owner.urgent);
      const at = Math.max(urgentAt, 0);
      const next = this.#waiters[at]!;
      if (!this.#fits(next.bytes, urgentAt >= 0)) return;
      this.#waiters.splice(at, 1);
      next.resolve(this.#take(next.bytes, urgentAt >= 0));
    }
  }

  /** Rejects every waiter with `err()`; later reservations reject too. Held bytes stay held until released. */
  close(err: () => Error): void {
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(err());
  }

  #fits(bytes: number, urgent: boolean): boolean {
    if (urgent) return this.#heldBytes + bytes <= this.capacityBytes || this.#urgentHeldBytes === 0;
    return this.#heldBytes + bytes <= this.#backgroundBytes || this.#heldBytes === 0;
  }

  #take(bytes: number, urgent: boolean): () => void {
    this.#heldBytes += bytes;
    if (urgent) this.#urgentHeldBytes += bytes;
    this.peakBytes = Math.max(this.peakBytes, this.#heldBytes);
    let released = false;
    return () => {
      if (released) throw new Error('internal: blob bytes released twice');
      released = true;
      this.#heldBytes -= bytes;
      if (urgent) this.#urgentHeldBytes -= bytes;
      this.pump();
    };
  }
}
