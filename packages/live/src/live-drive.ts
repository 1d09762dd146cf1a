/*
 * Over 400 lines on purpose: one drive's region lifecycle (reads lent from the target or
 * the cache with their write-behind stores, where a region's backup bytes come from, fills,
 * guest writes, copy, durability) reads best where its state lives; the pieces with their
 * own state are in region-writer.ts, region-state.ts, backup-copies.ts, map-persister.ts,
 * target-open.ts, target-file.ts (with staged-direct.ts) and sched.ts.
 */
import { join } from 'node:path';
import {
  type AllocationExtent,
  type ExtentUnits,
  mergedExtents,
  type NbdExport,
  type NbdWriter,
} from '@liverestore/nbd';
import {
  type CachedChunkReader,
  copyLease,
  heapScratch,
  type ReadLease,
  type ScratchBuffers,
  scratchLease,
  settleLeases,
  zeroLease,
} from '@liverestore/reader/internal';
import { ALLOC_MAP_SUFFIX, type MapIdentity } from './alloc-map.js';
import { forNbd, settleAll } from './async-util.js';
import { BackupCopies } from './backup-copies.js';
import { LiveError, targetIoError } from './errors.js';
import type { LiveDriveOptions, LiveDriveStats } from './live-drive-options.js';
import { MapPersister } from './map-persister.js';
import { RegionEvent, RegionState, RegionStates } from './region-state.js';
import { RegionWriter } from './region-writer.js';
import { GuestPriority, RegionLocks, Semaphore } from './sched.js';
import { realTargetFiles, type TargetFile } from './target-file.js';
import { mapIdentityOf, openTarget } from './target-open.js';

export type { LiveDriveOptions, LiveDriveStats } from './live-drive-options.js';

/**
 * One drive of a writable live restore: a sparse target file, its persistent allocation
 * map, and the NBD export over both (it implements @liverestore/nbd's `NbdExport` with a
 * `writer`).
 *
 * Regions are the archive's fixed chunks (normally 4 MiB); each has one {@link RegionState}
 * (see region-state.ts for the table). A region is *local* once the target file holds its
 * content: the backup's bytes, with any guest writes on top.
 * - A read of local regions is a pread of the target.
 * - A read of a region not local is answered from the backup (shared cache) without the
 *   region's lock; the whole region is then stored in the target in the background
 *   (copy-on-read, once per region); the region becomes local when the store completed.
 * - A write to a region not local first fills it from the backup (region-grain tracking),
 *   applies the guest's bytes to the same buffer and writes the result once; a write
 *   covering a whole region needs no fetch.
 * - WRITE_ZEROES and TRIM are zeroing writes (TRIMmed ranges read as zeroes).
 * - One lock per region: the copy, fills and guest writes never interleave on a region,
 *   so a copy never overwrites guest data (it only ever fills a region not yet local,
 *   under the region's lock, and re-checks after taking it).
 * - Durability: see {@link MapPersister}. FLUSH (and FUA) = {@link persist}.
 */
export class LiveDrive implements NbdExport {
  readonly name: string;
  readonly size: number;
  readonly targetPath: string;
  readonly mapPath: string;
  readonly identity: MapIdentity;
  readonly regionBytes: number;
  readonly regionCount: number;
  /** True when an existing target and map were resumed (false: created by this open). */
  readonly resumed: boolean;
  /** The NBD write side; its errors carry the POSIX `code` NBD reports (ENOSPC, EIO, …). */
  readonly writer: NbdWriter;
  readonly #reader: CachedChunkReader;
  readonly #copyReader: CachedChunkReader;
  readonly #file: TargetFile;
  readonly #states: RegionStates;
  readonly #persister: MapPersister;
  readonly #locks = new RegionLocks();
  readonly #priority: GuestPriority;
  readonly #fillSlots: Semaphore;
  readonly #regionWriter: RegionWriter;
  readonly #copies: BackupCopies;
  #closed = false;
  #detached = false;
  readonly #stats = {
    bytesCopied: 0,
    bytesFilledForGuest: 0,
    bytesWrittenByGuest: 0,
    guestReads: 0,
    guestReadsFromBackup: 0,
    bytesFromTargetCopies: 0,
    storeFailures: 0,
  };
  /** Called when a region became local (progress, completion). */
  onLocal: ((drive: LiveDrive) => void) | undefined;
  /** Called when a background store of a copy-on-read failed (the read itself succeeded). */
  onStoreError: ((err: LiveError, drive: LiveDrive) => void) | undefined;
  /**
   * Called when a guest read fails (the client only gets an NBD error code: a corrupt
   * chunk would leave no trace otherwise); not for reads cut by their client.
   */
  onReadError: ((err: unknown, offset: number, drive: LiveDrive) => void) | undefined;

  private constructor(
    options: LiveDriveOptions,
    identity: MapIdentity,
    file: TargetFile,
    bits: Uint8Array | undefined,
    generation: number,
  ) {
    const reader = options.reader;
    this.name = reader.name;
    this.size = reader.size;
    this.#reader = reader;
    this.#copyReader = options.copyReader ?? reader;
    this.#file = file;
    this.targetPath = join(options.targetDir, reader.name);
    this.mapPath = this.targetPath + ALLOC_MAP_SUFFIX;
    this.identity = identity;
    this.regionBytes = identity.regionBytes;
    this.regionCount = identity.regionCount;
    this.resumed = bits !== undefined;
    this.#states = new RegionStates(this.regionCount, bits);
    this.#persister = new MapPersister({
      file,
      files: options.files ?? realTargetFiles,
      states: this.#states,
      identity,
      mapPath: this.mapPath,
      targetPath: this.targetPath,
      generation,
    });
    this.#copies = new BackupCopies(
      this.regionCount,
      (i) => reader.digestHexAt(i),
      (i) => reader.isZeroChunk(i),
    );
    // Readahead leaves regions alone that need no fetch: local ones, and those whose chunk
    // the target holds elsewhere.
    const needsNoFetch = (i: number): boolean => this.isLocal(i) || this.#copies.holding(i) !== undefined;
    reader.skipPrefetch = needsNoFetch;
    this.#copyReader.skipPrefetch = needsNoFetch;
    this.#priority = options.priority ?? new GuestPriority();
    this.#fillSlots = options.fillSlots ?? new Semaphore(32);
    this.#regionWriter = new RegionWriter({
      file,
      targetPath: this.targetPath,
      geometry: this,
      states: this.#states,
      transition: (i, event) => this.#transition(i, event),
      fetchForGuest: async (i) => {
        const region = await this.#fetchRegion(this.#reader, i);
        if (!this.#reader.isZeroChunk(i)) this.#stats.bytesFilledForGuest += region.length;
        return region;
      },
      backupFilled: (i) => this.#copies.filled(i),
      locks: this.#locks,
      priority: this.#priority,
      fillSlots: this.#fillSlots,
    });
    this.writer = {
      write: (data, offset, fua) => forNbd(this.#write(offset, data.length, data, fua)),
      writeZeroes: (offset, length, fua) => forNbd(this.#write(offset, length, undefined, fua)),
      trim: (offset, length, fua) => forNbd(this.#write(offset, length, undefined, fua)),
      flush: () => forNbd(this.persist()),
    };
  }

  /**
   * Opens (creates or resumes) the target of one archive in `targetDir` (the checks and
   * refusals are those of {@link openTarget}). A created target is all holes, so its
   * all-zero chunks are recorded local at once.
   */
  static async open(options: LiveDriveOptions): Promise<LiveDrive> {
    const reader = options.reader;
    const identity = mapIdentityOf(reader, options.snapshot);
    const target = await openTarget(
      join(options.targetDir, reader.name),
      identity,
      options.files ?? realTargetFiles,
    );
    const drive = new LiveDrive(options, identity, target.file, target.bits, target.generation);
    if (target.bits === undefined) {
      for (let i = 0; i < drive.regionCount; i++) {
        if (reader.isZeroChunk(i)) drive.#transition(i, RegionEvent.ZERO_FILLED);
      }
      try {
        await drive.persist();
      } catch (err) {
        await target.file.close();
        throw err;
      }
    }
    return drive;
  }

  regionStart(i: number): number {
    return i * this.regionBytes;
  }

  regionLength(i: number): number {
    return Math.min(this.regionBytes, this.size - i * this.regionBytes);
  }

  /** True when chunk `i` of the backup is all zeroes (filling it needs no fetch). */
  isZeroRegionOfBackup(i: number): boolean {
    return this.#copyReader.isZeroChunk(i);
  }

  isLocal(i: number): boolean {
    return this.#states.isLocal(i);
  }

  /** The state of region `i` (see region-state.ts); for diagnostics and tests. */
  regionState(i: number): RegionState {
    return this.#states.get(i);
  }

  get complete(): boolean {
    return this.#states.complete;
  }

  get regionsLocal(): number {
    return this.#states.localCount;
  }

  get bytesLocal(): number {
    const last = this.regionCount - 1;
    const shortLast = this.isLocal(last) ? this.regionBytes - this.regionLength(last) : 0;
    return this.#states.localCount * this.regionBytes - shortLast;
  }

  stats(): LiveDriveStats {
    return {
      name: this.name,
      sizeBytes: this.size,
      regionBytes: this.regionBytes,
      regionCount: this.regionCount,
      regionsLocal: this.regionsLocal,
      bytesLocal: this.bytesLocal,
      ...this.#stats,
      bytesWrittenDirect: this.#file.directBytes ?? 0,
      mapGeneration: this.#persister.generation,
      complete: this.complete,
    };
  }

  /**
   * After every region is local the backup is never read again: the drive forgets its
   * readers, so a bug that would read them fails loudly instead of using a closed source.
   */
  detachBackup(): void {
    if (!this.complete) throw new Error(`${this.name}: detachBackup before every region is local`);
    this.#detached = true;
  }

  /** Applies `event` to region `i` (the table throws on an illegal one); counts a region that became local. */
  #transition(i: number, event: RegionEvent): void {
    // Before the guest's bytes land: a copy of the backup's chunk no longer.
    if (event === RegionEvent.GUEST_WRITE) this.#copies.forget(i);
    if (this.#states.transition(i, event)) {
      this.#persister.regionBecameLocal();
      this.onLocal?.(this);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new LiveError('ERR_LR_LIVE_CLOSED', `drive ${this.name} is closed`);
  }

  /** Calls `each(i, from, to)` for every region overlapped by [offset, offset + length). */
  #eachRegion<T>(offset: number, length: number, each: (i: number, from: number, to: number) => T): T[] {
    const out: T[] = [];
    const end = offset + length;
    for (let i = Math.floor(offset / this.regionBytes); i * this.regionBytes < end; i++) {
      out.push(
        each(
          i,
          Math.max(offset, this.regionStart(i)),
          Math.min(end, this.regionStart(i) + this.regionLength(i)),
        ),
      );
    }
    return out;
  }

  async #fetchRegion(reader: CachedChunkReader, i: number, signal?: AbortSignal): Promise<Buffer> {
    if (this.#detached) throw new Error(`${this.name}: the backup was read after the restore completed`);
    if (reader.isZeroChunk(i)) return Buffer.alloc(this.regionLength(i));
    const copy = await this.#readBackupCopy(i);
    if (copy !== undefined) return copy;
    const buffer = Buffer.allocUnsafe(this.regionLength(i));
    await reader.readAt(buffer, this.regionStart(i), signal);
    return buffer;
  }

  /**
   * Region `i` of the backup, whole (not a zero chunk): from memory when the cache holds
   * it, else read back from another region of the target holding its chunk when one
   * checks out, else through `reader` (the cache's pages when it lends them).
   */
  async #leaseRegion(reader: CachedChunkReader, i: number, signal?: AbortSignal): Promise<ReadLease> {
    const inMemory = reader.tryLeaseAtSync(this.regionStart(i), this.regionLength(i), heapScratch);
    if (inMemory !== undefined) return inMemory;
    const copy = await this.#readBackupCopy(i);
    if (copy !== undefined) return scratchLease(copy, heapScratch);
    return await reader.leaseAt(this.regionStart(i), this.regionLength(i), signal);
  }

  /**
   * Region `i`'s bytes read back from another region of the target that holds its chunk
   * as the backup has it (backup-copies.ts), once their digest matched the index's;
   * undefined when no region does or the bytes did not check out (a guest write raced
   * the read): then the chunk is fetched as any other.
   */
  async #readBackupCopy(i: number): Promise<Buffer | undefined> {
    const j = this.#copies.holding(i);
    if (j === undefined) return undefined;
    const buffer = Buffer.allocUnsafe(this.regionLength(i));
    await this.#readLocal(buffer, this.regionStart(j));
    if (!this.#reader.holdsChunk(i, buffer)) {
      this.#copies.forget(j);
      return undefined;
    }
    this.#stats.bytesFromTargetCopies += buffer.byteLength;
    return buffer;
  }

  /**
   * The background copy of region `i` (it must hold no lock): fills it from the backup
   * unless it is local by the time the lock is taken. Returns the bytes fetched from the
   * backup (0 for a zero chunk or a region that became local meanwhile).
   */
  async copyRegion(i: number, signal?: AbortSignal): Promise<number> {
    this.#checkOpen();
    if (this.isLocal(i)) return 0;
    const release = await this.#locks.acquire(i);
    try {
      if (this.isLocal(i)) return 0;
      signal?.throwIfAborted();
      if (this.#copyReader.isZeroChunk(i)) {
        await this.#regionWriter.zeroForCopy(i);
        return 0;
      }
      if (this.#detached) throw new Error(`${this.name}: the backup was read after the restore completed`);
      // Stored from the cache's pages (a copy only when the cache lends no more).
      const data = await this.#leaseRegion(this.#copyReader, i, signal);
      try {
        await this.#regionWriter.fillRegion(i, data.views);
      } finally {
        data.release();
      }
      this.#stats.bytesCopied += data.byteLength;
      return data.byteLength;
    } finally {
      release();
    }
  }

  // ---- NbdExport ----------------------------------------------------------------------

  /**
   * Fills `buffer` with the bytes at `offset` (within the image): {@link lease}'s bytes,
   * copied (the NBD server takes the lease itself).
   */
  async read(buffer: Buffer, offset: number, signal: AbortSignal): Promise<void> {
    const leased = await this.lease(offset, buffer.length, signal, heapScratch);
    try {
      copyLease(leased, buffer);
    } finally {
      leased.release();
    }
  }

  async #readLocal(buffer: Buffer, position: number): Promise<void> {
    try {
      await this.#file.pread(buffer, position);
    } catch (err) {
      throw targetIoError(err, this.targetPath, 'reading');
    }
  }

  /**
   * The bytes at [offset, offset + length) lent rather than copied (NbdExport.lease): local
   * runs are read from the target into `scratch` buffers, parts of regions not local are
   * views on the cache's pages, as {@link read} answers them (and with the same
   * write-behind store).
   */
  lease(offset: number, length: number, signal: AbortSignal, scratch: ScratchBuffers): Promise<ReadLease> {
    return forNbd(
      this.#leaseImpl(offset, length, signal, scratch).catch((err: unknown) => {
        if (!signal.aborted) this.onReadError?.(err, offset, this);
        throw err;
      }),
    );
  }

  async #leaseImpl(
    offset: number,
    length: number,
    signal: AbortSignal,
    scratch: ScratchBuffers,
  ): Promise<ReadLease> {
    this.#checkOpen();
    if (length === 0) return zeroLease(0);
    this.#stats.guestReads++;
    const parts: Promise<ReadLease>[] = [];
    let fromBackup = false;
    let runFrom = -1; // start of the current run of local regions (one pread for the run)
    let runTo = -1;
    const flushRun = (): void => {
      if (runFrom < 0) return;
      const buffer = scratch.take(runTo - runFrom);
      parts.push(this.#readLocal(buffer, runFrom).then(() => scratchLease(buffer, scratch)));
      runFrom = -1;
    };
    this.#eachRegion(offset, length, (i, from, to) => {
      if (this.isLocal(i)) {
        if (runFrom < 0) runFrom = from;
        runTo = to;
        return;
      }
      flushRun();
      fromBackup = true;
      parts.push(this.#readRemote(i, from, to - from, signal, scratch));
    });
    flushRun();
    if (fromBackup) this.#stats.guestReadsFromBackup++;
    return settleLeases(parts);
  }

  /**
   * A read of part of a region not local: answered from the backup through the shared
   * cache, without the region's lock, so it never waits behind the copy or another fill
   * of that region (a write overlapping it is concurrent, and NBD leaves the order of
   * concurrent overlapping requests open). The region is then stored in the target behind
   * the reply (copy-on-read, write-behind), so the next read of it is local.
   */
  async #readRemote(
    i: number,
    offset: number,
    length: number,
    signal: AbortSignal,
    scratch: ScratchBuffers,
  ): Promise<ReadLease> {
    if (this.#detached) throw new Error(`${this.name}: the backup was read after the restore completed`);
    this.#priority.enter();
    let part: ReadLease | undefined;
    let copy: Buffer | undefined;
    try {
      // In memory: lent. Else a copy of the chunk elsewhere in the target, else a fetch.
      part = this.#reader.tryLeaseAtSync(offset, length, scratch);
      if (part === undefined) copy = await this.#readBackupCopy(i);
      if (copy !== undefined) {
        const from = offset - this.regionStart(i);
        part = scratchLease(copy.subarray(from, from + length), heapScratch);
      }
      part ??= await this.#reader.leaseAt(offset, length, signal, scratch);
    } finally {
      this.#priority.leave();
    }
    this.#storeAfterRead(i, copy);
    return part;
  }

  /**
   * Copy-on-read, written behind: stores region `i` in the target once, in the
   * background, under its lock. The region's bytes are `copy` when the guest's read took
   * them from a copy in the target; else its chunk, in memory since the guest just read
   * it, stays pinned from now until it is stored (when the cache lends it: else the store
   * takes the bytes once a fill slot is free, as the copy would).
   */
  #storeAfterRead(i: number, copy: Buffer | undefined): void {
    if (this.isLocal(i) || this.#reader.isZeroChunk(i) || this.#regionWriter.storing(i)) return;
    const held =
      copy !== undefined
        ? scratchLease(copy, heapScratch)
        : this.#reader.tryLeaseAtSync(this.regionStart(i), this.regionLength(i), undefined);
    if (held !== undefined) this.#stats.bytesFilledForGuest += held.byteLength;
    this.#regionWriter.storeInBackground(i, {
      held,
      fetch: async () => {
        const data = await this.#leaseRegion(this.#reader, i);
        this.#stats.bytesFilledForGuest += data.byteLength;
        return data;
      },
      cancelled: () => this.#closed,
      onError: (err) => {
        this.#stats.storeFailures++;
        this.onStoreError?.(targetIoError(err, this.targetPath, 'storing'), this);
      },
    });
  }

  /** Resolves once no copy-on-read store is queued or running (tests replay sequences with it). */
  storesSettled(): Promise<void> {
    return this.#regionWriter.storesSettled();
  }

  /** Allocation: regions not local whose chunk is all-zero on a pristine target, and known-zero local ones, are holes. */
  blockStatus(offset: number, length: number, maxExtents: number): AllocationExtent[] {
    const units: ExtentUnits = {
      count: this.regionCount,
      indexAt: (at) => Math.floor(at / this.regionBytes),
      start: (i) => this.regionStart(i),
      end: (i) => this.regionStart(i) + this.regionLength(i),
      zero: (i) => {
        const state = this.#states.get(i);
        return (
          state === RegionState.LOCAL_KNOWN_ZERO ||
          (state === RegionState.REMOTE_PRISTINE && !this.#detached && this.#reader.isZeroChunk(i))
        );
      },
    };
    return mergedExtents(units, offset, Math.min(offset + length, this.size), maxExtents);
  }

  /** A guest write of `data` (or of zeroes when undefined: WRITE_ZEROES, TRIM) at `offset`. */
  async #write(offset: number, length: number, data: Buffer | undefined, fua: boolean): Promise<void> {
    this.#checkOpen();
    if (length > 0) {
      await settleAll(
        this.#eachRegion(offset, length, (i, from, to) =>
          this.#regionWriter.writeRegion(i, from, to, data?.subarray(from - offset, to - offset)),
        ),
      );
      this.#stats.bytesWrittenByGuest += length;
    }
    if (fua) await this.persist();
  }

  // ---- durability ---------------------------------------------------------------------

  /**
   * Makes every write completed before the call durable and records every region local
   * before the call in the map file (see {@link MapPersister}).
   */
  persist(): Promise<void> {
    return this.#persister.persist();
  }

  /** True when regions became local since the map was last written. */
  get dirty(): boolean {
    return this.#persister.dirty;
  }

  /** Waits for in-flight region work, persists, closes the target. Requests fail afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#locks.idle();
    try {
      await this.persist();
    } finally {
      await this.#file.close();
    }
  }
}
