/*
 * The bytes of a read lent where they already lie instead of copied into the caller's
 * buffer: views on the cache's pinned pages (a chunk's pages are in any order, so one
 * chunk may be several views, and a read spanning chunks more), with one release that
 * unpins them. Parts that cannot be lent (a chunk read from the spill file, a read in a
 * thread other than the cache's, a cache whose lending share is spent) are copied into a
 * buffer from the caller's {@link ScratchBuffers}; the same release gives that back.
 *
 * An NBD reply writes the views straight to its socket and releases when the socket has
 * taken them; a live restore stores a region from them in the target file.
 */

/** A read's bytes, lent: read-only views, in order; {@link release} exactly once when done with them. */
export interface ReadLease {
  /** The bytes in order. Never written to: they may be the cache's own pages or shared zeroes. */
  readonly views: readonly Buffer[];
  readonly byteLength: number;
  /**
   * Memory kept from reuse until the release: the whole chunks pinned (a 64 KiB view of a
   * 4 MiB chunk holds 4 MiB of cache) plus the scratch buffers owned. What a budget of
   * unsent replies must count.
   */
  readonly heldBytes: number;
  /** Unpins the chunks and gives back the scratch buffers; a second call throws. */
  release(): void;
}

/** Where the copied parts of a lease get their buffers (the NBD server passes its reply buffers). */
export interface ScratchBuffers {
  /** A buffer of exactly `length` bytes (contents unspecified). */
  take(length: number): Buffer;
  /** Returns a buffer from `take` that nothing refers to any more. */
  give(buffer: Buffer): void;
}

/** Fresh heap buffers, left to the garbage collector. */
export const heapScratch: ScratchBuffers = {
  take: (length) => Buffer.allocUnsafe(length),
  give: () => {},
};

/** `release` wrapped so that a second call throws instead of unpinning someone else's pin. */
function once(release: () => void): () => void {
  let released = false;
  return () => {
    if (released) throw new Error('internal: a read lease was released twice');
    released = true;
    release();
  };
}

/** A lease over views whose memory `release` gives back; `heldBytes` as {@link ReadLease.heldBytes}. */
export function viewLease(views: readonly Buffer[], heldBytes: number, release: () => void): ReadLease {
  let byteLength = 0;
  for (const v of views) byteLength += v.byteLength;
  return { views, byteLength, heldBytes, release: once(release) };
}

/** A lease on a buffer the bytes were copied into (given back to `scratch` on release). */
export function scratchLease(buffer: Buffer, scratch: ScratchBuffers): ReadLease {
  return viewLease([buffer], buffer.byteLength, () => scratch.give(buffer));
}

/** Shared zeroes for the all-zero chunks of an image: views on them, never written. */
const ZEROES = Buffer.alloc(1024 * 1024);

/** A lease of `length` zero bytes: views on shared zeroes, nothing held. */
export function zeroLease(length: number): ReadLease {
  const views: Buffer[] = [];
  for (let at = 0; at < length; at += ZEROES.byteLength)
    views.push(ZEROES.subarray(0, Math.min(ZEROES.byteLength, length - at)));
  return viewLease(views, 0, () => {});
}

/** One lease of `parts` in order: its release releases each part. */
export function joinLeases(parts: readonly ReadLease[]): ReadLease {
  if (parts.length === 1) return parts[0]!;
  const views: Buffer[] = [];
  let heldBytes = 0;
  for (const p of parts) {
    views.push(...p.views);
    heldBytes += p.heldBytes;
  }
  return viewLease(views, heldBytes, () => {
    for (const p of parts) p.release();
  });
}

/**
 * One lease of the parts of a read, in order, once all have settled; if one failed, the
 * others are released and its error thrown (nothing stays pinned).
 */
export async function settleLeases(parts: readonly Promise<ReadLease>[]): Promise<ReadLease> {
  const results = await Promise.allSettled(parts);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    for (const r of results) if (r.status === 'fulfilled') r.value.release();
    throw failed.reason;
  }
  return joinLeases(results.map((r) => (r as PromiseFulfilledResult<ReadLease>).value));
}

/** Copies a lease's bytes into `target` at `targetOffset` (the copy fallback); the lease stays held. */
export function copyLease(lease: ReadLease, target: Uint8Array, targetOffset = 0): void {
  let at = targetOffset;
  for (const v of lease.views) {
    v.copy(target, at);
    at += v.byteLength;
  }
}
