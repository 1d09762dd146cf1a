/**
 * Live restore's fills written past the page cache (O_DIRECT). A live restore writes every
 * byte of the image once into a fresh file; written buffered, each 4 MiB costs ≈ 2.5 ms
 * of kernel CPU copying into fresh page-cache pages on a VM that hands freed memory back
 * to its host (docs/benchmarks.md, the restore's and the spill file's O_DIRECT), on the
 * cores the guest's reads need. Bytes that lie in the cache's pages (page-aligned
 * memory: a region's usual source) are written from there, one request for the run;
 * others (a heap copy, bytes read back from the target) are copied into a page-aligned
 * staging slot first (O_DIRECT's rule for memory) and written from it, one request per
 * 4 MiB.
 */
import { Semaphore } from '@liverestore/format/internal';
import {
  DIRECT_ALIGN_BYTES,
  DirectDescriptor,
  directWritable,
  pageAlignedSharedBuffer,
  viewsAfter,
  viewsUpTo,
} from '@liverestore/reader/internal';

/** Bytes of one staging slot: the largest piece one O_DIRECT request writes. */
export const STAGING_SLOT_BYTES = 4 * 1024 * 1024;

/** Staging slots per target file: staged writes in flight at once. */
export const STAGING_SLOTS = 4;

export class StagedDirectWrites {
  readonly #direct: DirectDescriptor;
  readonly #memory: Uint8Array;
  readonly #slots = new Semaphore(STAGING_SLOTS);
  readonly #free = Array.from({ length: STAGING_SLOTS }, (_, i) => i);
  /** Bytes copied into staging slots (the rest was written from where it lay). */
  stagedBytes = 0;

  private constructor(direct: DirectDescriptor) {
    this.#direct = direct;
    this.#memory = new Uint8Array(pageAlignedSharedBuffer(STAGING_SLOTS * STAGING_SLOT_BYTES).buffer);
  }

  /**
   * O_DIRECT writes to `path` (which must exist); undefined where the file system refuses
   * them. `openDirect` is the fault seam of tests (a descriptor the kernel already refused).
   */
  static open(
    path: string,
    openDirect: (path: string) => DirectDescriptor | undefined = DirectDescriptor.open,
  ): StagedDirectWrites | undefined {
    const direct = openDirect(path);
    return direct === undefined ? undefined : new StagedDirectWrites(direct);
  }

  /** Bytes written past the page cache so far. */
  get bytes(): number {
    return this.#direct.bytes;
  }

  /**
   * Writes the first `length` bytes of `views` (taken back to back) at `position`; both
   * multiples of {@link DIRECT_ALIGN_BYTES}. Returns the bytes written: fewer when the
   * kernel refused O_DIRECT (from then on, 0), and then the caller writes the rest
   * through the page cache.
   */
  async write(views: readonly Uint8Array[], length: number, position: number): Promise<number> {
    if (length % DIRECT_ALIGN_BYTES !== 0 || position % DIRECT_ALIGN_BYTES !== 0)
      throw new RangeError(`an O_DIRECT write needs ${DIRECT_ALIGN_BYTES}-byte alignment`);
    const run = viewsUpTo(views, length);
    if (run.every(directWritable)) return await this.#direct.writeAll(run, position);
    return await this.#writeStaged(views, length, position);
  }

  /** The bytes copied into a staging slot, 4 MiB at a time, and written from there. */
  async #writeStaged(views: readonly Uint8Array[], length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const piece = Math.min(STAGING_SLOT_BYTES, length - done);
      const release = await this.#slots.acquire();
      const slot = this.#free.pop()!;
      let written: number;
      try {
        const staging = this.#memory.subarray(slot * STAGING_SLOT_BYTES, slot * STAGING_SLOT_BYTES + piece);
        copyOfViews(views, done, staging);
        this.stagedBytes += piece;
        written = await this.#direct.writeAll([staging], position + done);
      } finally {
        this.#free.push(slot);
        release();
      }
      done += written;
      // Refused, or short and no longer aligned: the page cache takes the rest.
      if (written < piece) break;
    }
    return done;
  }

  /** Closes the O_DIRECT descriptor; no write may be in flight. */
  close(): void {
    this.#direct.close();
  }
}

/** Copies bytes [from, from + target.length) of `views` taken back to back into `target`. */
export function copyOfViews(views: readonly Uint8Array[], from: number, target: Uint8Array): void {
  let at = 0;
  for (const view of viewsUpTo(viewsAfter(views, from), target.byteLength)) {
    target.set(view, at);
    at += view.byteLength;
  }
  if (at < target.byteLength) throw new RangeError('copyOfViews: the views end before the range');
}
