import { dataExtents, type ReadLease } from '@liverestore/reader/internal';
import { targetIoError } from './errors.js';
import { RegionEvent, RegionState, type RegionStates } from './region-state.js';
import type { GuestPriority, RegionLocks, Semaphore } from './sched.js';
import { type TargetFile, writeZeroes } from './target-file.js';

/** A run of bytes to write at one position: the views back to back. */
interface WriteRun {
  readonly position: number;
  readonly views: Buffer[];
}

/**
 * The writes of a fill at `start`: one run of every view, or, with `skipZeroBlocks` (a
 * hole), a run per stretch of data between all-zero 64 KiB blocks, across view borders.
 */
export function fillRuns(data: readonly Buffer[], start: number, skipZeroBlocks: boolean): WriteRun[] {
  if (!skipZeroBlocks) return [{ position: start, views: [...data] }];
  const runs: WriteRun[] = [];
  let last: WriteRun | undefined;
  let lastEnd = -1;
  let at = start;
  for (const view of data) {
    for (const [from, to] of dataExtents(view)) {
      if (last !== undefined && lastEnd === at + from) last.views.push(view.subarray(from, to));
      else {
        last = { position: at + from, views: [view.subarray(from, to)] };
        runs.push(last);
      }
      lastEnd = at + to;
    }
    at += view.byteLength;
  }
  return runs;
}

/** Where the regions of a drive lie in its image. */
export interface RegionGeometry {
  regionStart(i: number): number;
  regionLength(i: number): number;
}

/** What a {@link RegionWriter} works with (all owned by its drive). */
export interface RegionWriterParts {
  readonly file: TargetFile;
  readonly targetPath: string;
  readonly geometry: RegionGeometry;
  readonly states: RegionStates;
  /** Applies a transition through the drive (which counts regions that became local). */
  readonly transition: (i: number, event: RegionEvent) => void;
  /** A full region of the backup for a guest fill (counted by the drive). */
  readonly fetchForGuest: (i: number) => Promise<Buffer>;
  /** Region `i` was filled with the backup's bytes, nothing else (see backup-copies.ts). */
  readonly backupFilled: (i: number) => void;
  readonly locks: RegionLocks;
  readonly priority: GuestPriority;
  readonly fillSlots: Semaphore;
}

/**
 * Every write into a drive's target, with the region-state transitions around it: fills
 * (copy, copy-on-read, the fill before a partial guest write) and guest writes. Bytes
 * are only ever written into a region not local after FILL_STARTED, so a region that may
 * hold part of them is never taken for a hole, and only under the region's lock.
 */
export class RegionWriter {
  readonly #file: TargetFile;
  readonly #targetPath: string;
  readonly #geometry: RegionGeometry;
  readonly #states: RegionStates;
  readonly #transition: (i: number, event: RegionEvent) => void;
  readonly #fetchForGuest: (i: number) => Promise<Buffer>;
  readonly #backupFilled: (i: number) => void;
  readonly #locks: RegionLocks;
  readonly #priority: GuestPriority;
  readonly #fillSlots: Semaphore;
  /** Background stores queued or running, by region (each region is stored once at a time). */
  readonly #stores = new Map<number, Promise<void>>();

  constructor(parts: RegionWriterParts) {
    this.#file = parts.file;
    this.#targetPath = parts.targetPath;
    this.#geometry = parts.geometry;
    this.#states = parts.states;
    this.#transition = parts.transition;
    this.#fetchForGuest = parts.fetchForGuest;
    this.#backupFilled = parts.backupFilled;
    this.#locks = parts.locks;
    this.#priority = parts.priority;
    this.#fillSlots = parts.fillSlots;
  }

  /**
   * Writes the backup's bytes of region `i` into it, not local (holding the region's
   * lock), and marks it local. `data` is the region's bytes in order: one buffer, or the
   * views of a lease on the cache's pages.
   */
  async fillRegion(i: number, data: readonly Buffer[]): Promise<void> {
    await this.#writeFill(i, data);
    this.#backupFilled(i);
  }

  /**
   * Writes a full region into region `i`, not local, and marks it local. A pristine
   * region (a hole) skips all-zero 64 KiB blocks and stays sparse.
   */
  async #writeFill(i: number, data: readonly Buffer[]): Promise<void> {
    const pristine = this.#states.get(i) === RegionState.REMOTE_PRISTINE;
    this.#transition(i, RegionEvent.FILL_STARTED);
    try {
      for (const run of fillRuns(data, this.#geometry.regionStart(i), pristine))
        await this.#file.pwritev(run.views, run.position);
    } catch (err) {
      throw targetIoError(err, this.#targetPath, 'writing');
    }
    this.#transition(i, RegionEvent.FILLED);
  }

  /**
   * A zero chunk not yet local: a pristine region is a hole already; a dirty one may hold
   * part of an interrupted write, so the non-zero blocks found in it are zeroed.
   */
  async zeroForCopy(i: number): Promise<void> {
    if (this.#states.get(i) === RegionState.REMOTE_PRISTINE) {
      this.#transition(i, RegionEvent.ZERO_FILLED);
      return;
    }
    this.#transition(i, RegionEvent.FILL_STARTED);
    const start = this.#geometry.regionStart(i);
    const current = Buffer.allocUnsafe(this.#geometry.regionLength(i));
    try {
      await this.#file.pread(current, start);
      for (const [from, to] of dataExtents(current)) await writeZeroes(this.#file, to - from, start + from);
    } catch (err) {
      throw targetIoError(err, this.#targetPath, 'zeroing');
    }
    this.#transition(i, RegionEvent.FILLED);
  }

  /** Applies guest bytes (`data`, or zeroes when undefined) to [from, to) of region `i`. */
  async writeRegion(i: number, from: number, to: number, data: Buffer | undefined): Promise<void> {
    if (this.#states.isLocal(i)) {
      // Local regions are never written by the copy or a fill: no lock needed.
      this.#transition(i, RegionEvent.GUEST_WRITE);
      await this.#apply(from, to, data);
      return;
    }
    this.#priority.enter();
    const release = await this.#locks.acquire(i);
    try {
      if (this.#states.isLocal(i)) {
        this.#transition(i, RegionEvent.GUEST_WRITE);
        await this.#apply(from, to, data);
      } else if (from === this.#geometry.regionStart(i) && to === from + this.#geometry.regionLength(i)) {
        await this.#writeWholeRegion(i, from, to, data);
      } else {
        await this.#fillAndWrite(i, from, to, data);
      }
    } finally {
      release();
      this.#priority.leave();
    }
  }

  /** A write covering region `i`, not local: no fetch; zeroing a pristine region writes nothing. */
  async #writeWholeRegion(i: number, from: number, to: number, data: Buffer | undefined): Promise<void> {
    if (data === undefined && this.#states.get(i) === RegionState.REMOTE_PRISTINE) {
      this.#transition(i, RegionEvent.ZERO_FILLED);
      return;
    }
    this.#transition(i, RegionEvent.FILL_STARTED);
    await this.#apply(from, to, data);
    this.#transition(i, RegionEvent.FILLED);
  }

  /** Region-grain tracking: fills region `i` from the backup, puts the guest's bytes on top, writes it once. */
  async #fillAndWrite(i: number, from: number, to: number, data: Buffer | undefined): Promise<void> {
    const start = this.#geometry.regionStart(i);
    const slot = await this.#fillSlots.acquire();
    try {
      const region = await this.#fetchForGuest(i);
      if (data === undefined) region.fill(0, from - start, to - start);
      else data.copy(region, from - start);
      await this.#writeFill(i, [region]);
    } finally {
      slot();
    }
  }

  async #apply(from: number, to: number, data: Buffer | undefined): Promise<void> {
    try {
      if (data === undefined) await writeZeroes(this.#file, to - from, from);
      else await this.#file.pwrite(data, from);
    } catch (err) {
      throw targetIoError(err, this.#targetPath, 'writing');
    }
  }

  /** True while a background store of region `i` is queued or running. */
  storing(i: number): boolean {
    return this.#stores.has(i);
  }

  /**
   * Copy-on-read, written behind the guest's reply: fills region `i` in the background,
   * once, under its lock and a fill slot, unless it is local or `cancelled()` by then.
   * The bytes are `held` (the region's chunk pinned in the cache when the guest read it:
   * it cannot be evicted and fetched again meanwhile), else taken with `fetch()` once a
   * fill slot is free. A failure goes to `onError` (the region stays not local and is
   * filled again later). The lease is released once, whatever happens.
   */
  storeInBackground(
    i: number,
    how: {
      held: ReadLease | undefined;
      fetch: () => Promise<ReadLease>;
      cancelled: () => boolean;
      onError: (err: unknown) => void;
    },
  ): void {
    if (this.#stores.has(i)) {
      how.held?.release();
      return;
    }
    const store = async (): Promise<void> => {
      let data = how.held;
      try {
        const slot = await this.#fillSlots.acquire();
        try {
          if (this.#states.isLocal(i) || how.cancelled()) return;
          // Taken before the region's lock (the copy may hold it), while the chunk the
          // guest just read is still in the cache.
          data ??= await how.fetch();
          const release = await this.#locks.acquire(i);
          try {
            if (this.#states.isLocal(i) || how.cancelled()) return;
            await this.fillRegion(i, data.views);
          } finally {
            release();
          }
        } finally {
          slot();
        }
      } finally {
        data?.release();
      }
    };
    this.#stores.set(
      i,
      store()
        .catch(how.onError)
        .finally(() => this.#stores.delete(i)),
    );
  }

  /** Resolves once no background store is queued or running. */
  async storesSettled(): Promise<void> {
    while (this.#stores.size > 0) await Promise.all(this.#stores.values());
  }
}
