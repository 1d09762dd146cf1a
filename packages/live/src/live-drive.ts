import { type FileHandle, mkdir, open, stat, truncate } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { toHex } from '@liverestore/format';
import type { AllocationExtent, NbdExport, NbdWriter } from '@liverestore/nbd';
import { type CachedChunkReader, dataExtents } from '@liverestore/reader';
import {
  ALLOC_MAP_SUFFIX,
  checkMapIdentity,
  encodeMap,
  type MapIdentity,
  RegionBitmap,
  readMapFile,
  syncDir,
  writeMapFile,
} from './alloc-map.js';
import { LiveError, systemCode, targetIoError } from './errors.js';
import { GuestPriority, RegionLocks, Semaphore } from './sched.js';

/** Counters of one drive. */
export interface LiveDriveStats {
  readonly name: string;
  readonly sizeBytes: number;
  readonly regionBytes: number;
  readonly regionCount: number;
  readonly regionsLocal: number;
  /** Bytes of the image in local regions (the last region may be short). */
  readonly bytesLocal: number;
  /** Region bytes fetched from the backup by the background copy. */
  readonly bytesCopied: number;
  /** Region bytes fetched from the backup for guest reads (copy-on-read) and partial writes. */
  readonly bytesFilledForGuest: number;
  /** Bytes the guest wrote (WRITE, WRITE_ZEROES, TRIM). */
  readonly bytesWrittenByGuest: number;
  /** Guest read requests, and how many of them needed the backup. */
  readonly guestReads: number;
  readonly guestReadsFromBackup: number;
  /** Copy-on-read stores that failed (the region stays not local; it is filled again later). */
  readonly storeFailures: number;
  /** Times the map was persisted. */
  readonly mapGeneration: number;
  readonly complete: boolean;
}

/** Options of {@link LiveDrive.open}. */
export interface LiveDriveOptions {
  /** Reader for guest requests (its readahead follows the guest's stream). */
  readonly reader: CachedChunkReader;
  /** Reader for the background copy (its own readahead); default `reader`. */
  readonly copyReader?: CachedChunkReader | undefined;
  /** Directory of the target file `DIR/<archive name>` and its map `DIR/<archive name>.map`. */
  readonly targetDir: string;
  /** `vm/100/2026-11-26T10:00:00Z`: recorded in the map, checked on resume. */
  readonly snapshot: string;
  /** Shared by the drives of a restore: the copy yields to guest fills. */
  readonly priority?: GuestPriority | undefined;
  /**
   * Guest fills (copy-on-read, fill before a partial write) holding a region buffer at
   * once; shared by the drives of a restore. Default: 32 per drive.
   */
  readonly fillSlots?: Semaphore | undefined;
}

const ZERO_BLOCK = Buffer.alloc(4 * 1024 * 1024);

async function preadFull(handle: FileHandle, buffer: Uint8Array, position: number): Promise<void> {
  let at = 0;
  while (at < buffer.byteLength) {
    const { bytesRead } = await handle.read(buffer, at, buffer.byteLength - at, position + at);
    if (bytesRead === 0) {
      buffer.fill(0, at); // past EOF of a shorter file: never happens with a checked size
      return;
    }
    at += bytesRead;
  }
}

async function pwriteFull(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let at = 0;
  while (at < data.byteLength) {
    at += (await handle.write(data, at, data.byteLength - at, position + at)).bytesWritten;
  }
}

async function pwriteZeroes(handle: FileHandle, length: number, position: number): Promise<void> {
  let at = 0;
  while (at < length) {
    const n = Math.min(ZERO_BLOCK.length, length - at);
    await pwriteFull(handle, ZERO_BLOCK.subarray(0, n), position + at);
    at += n;
  }
}

/**
 * One drive of a writable live restore: a sparse target file, its persistent allocation
 * map, and the NBD export over both (it implements @liverestore/nbd's `NbdExport` with a
 * `writer`).
 *
 * Regions are the archive's fixed chunks (normally 4 MiB). A region is *local* once the
 * target file holds its content: the backup's bytes, with any guest writes on top.
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
 * - Durability: a region is recorded local in the map file only if the target was
 *   fdatasync'ed after the region became local in memory ({@link persist}: snapshot the
 *   bitmap, fdatasync, write the map atomically). FLUSH (and FUA) = persist.
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
  readonly #handle: FileHandle;
  readonly #bitmap: RegionBitmap;
  readonly #locks = new RegionLocks();
  readonly #priority: GuestPriority;
  readonly #fillSlots: Semaphore;
  /** Regions whose copy-on-read store is queued or running (each is stored once). */
  readonly #storesAfterRead = new Set<number>();
  /**
   * Regions of the target we know to be holes: the target was created by this process and
   * nothing was written to the region yet. Only they may skip zero blocks when filled;
   * after a restart a region not local may hold part of an interrupted fill or write.
   */
  readonly #pristine: Uint8Array;
  /** Local regions known to read as zeroes (zero chunk, pristine), reported as holes. */
  readonly #knownZero: Uint8Array;
  /** Bumped whenever a region becomes local; compared with what the map file holds. */
  #changes = 0;
  #persistedChanges = 0;
  #generation: number;
  #persistQueued: Promise<void> | undefined;
  #persistTail: Promise<void> = Promise.resolve();
  #closed = false;
  #detached = false;
  readonly #stats = {
    bytesCopied: 0,
    bytesFilledForGuest: 0,
    bytesWrittenByGuest: 0,
    guestReads: 0,
    guestReadsFromBackup: 0,
    storeFailures: 0,
  };
  /** Called when a region became local (progress, completion). */
  onLocal: ((drive: LiveDrive) => void) | undefined;
  /** Called when a background store of a copy-on-read failed (the read itself succeeded). */
  onStoreError: ((err: LiveError, drive: LiveDrive) => void) | undefined;

  private constructor(
    reader: CachedChunkReader,
    copyReader: CachedChunkReader,
    handle: FileHandle,
    targetPath: string,
    identity: MapIdentity,
    bitmap: RegionBitmap,
    generation: number,
    fresh: boolean,
    priority: GuestPriority,
    fillSlots: Semaphore,
  ) {
    this.name = reader.name;
    this.size = reader.size;
    this.#reader = reader;
    this.#copyReader = copyReader;
    this.#handle = handle;
    this.targetPath = targetPath;
    this.mapPath = targetPath + ALLOC_MAP_SUFFIX;
    this.identity = identity;
    this.regionBytes = identity.regionBytes;
    this.regionCount = identity.regionCount;
    this.#bitmap = bitmap;
    this.#generation = generation;
    this.#priority = priority;
    this.#fillSlots = fillSlots;
    this.resumed = !fresh;
    this.#pristine = new Uint8Array(this.regionCount).fill(fresh ? 1 : 0);
    this.#knownZero = new Uint8Array(this.regionCount);
    this.writer = {
      write: (data, offset, fua) => forNbd(this.#write(data, offset, fua)),
      writeZeroes: (offset, length, fua) => forNbd(this.#zero(offset, length, fua)),
      trim: (offset, length, fua) => forNbd(this.#zero(offset, length, fua)),
      flush: () => forNbd(this.persist()),
    };
  }

  /**
   * Opens (creates or resumes) the target of one archive in `targetDir`:
   * - no map and no target: creates the map (nothing local), then the sparse target of
   *   the image size, then records the all-zero chunks as local (the target is all holes);
   * - map and target: resumes after checking that the map belongs to this snapshot and
   *   archive (`ERR_LR_LIVE_SNAPSHOT_MISMATCH`), is intact (`ERR_LR_LIVE_MAP_CORRUPT`) and
   *   that the target has the image size (`ERR_LR_LIVE_TARGET_SIZE`);
   * - a target without a map was not made by a live restore: `ERR_LR_LIVE_TARGET_EXISTS`;
   * - a map with local regions but no target: `ERR_LR_LIVE_TARGET_MISSING`.
   */
  static async open(options: LiveDriveOptions): Promise<LiveDrive> {
    const reader = options.reader;
    const index = reader.index;
    if (index.kind !== 'fixed' || index.chunkCount === 0) {
      throw new LiveError(
        'ERR_LR_LIVE_NOT_A_DISK',
        `archive ${reader.name} is not a disk image (fixed index)`,
      );
    }
    const regionBytes = index.chunkEnd(0) - index.chunkStart(0);
    const identity: MapIdentity = {
      snapshot: options.snapshot,
      archive: reader.name,
      indexCsum: toHex(index.indexCsum),
      imageBytes: reader.size,
      regionBytes,
      regionCount: index.chunkCount,
    };
    const targetPath = join(options.targetDir, reader.name);
    const mapPath = targetPath + ALLOC_MAP_SUFFIX;
    try {
      await mkdir(options.targetDir, { recursive: true });
    } catch (err) {
      throw targetIoError(err, options.targetDir, 'creating');
    }
    const map = await readMapFile(mapPath);
    if (map !== undefined) checkMapIdentity(map.identity, identity, mapPath);
    const existing = await stat(targetPath).catch((err: unknown) => {
      if (systemCode(err) === 'ENOENT') return undefined;
      throw targetIoError(err, targetPath, 'stat of');
    });
    let bitmap: RegionBitmap;
    let fresh = false;
    let handle: FileHandle;
    if (existing !== undefined) {
      if (map === undefined) {
        throw new LiveError(
          'ERR_LR_LIVE_TARGET_EXISTS',
          `${targetPath} exists but has no allocation map (${mapPath}): it was not created by a live restore; ` +
            'remove it or give another --target-dir',
        );
      }
      if (!existing.isFile()) {
        throw new LiveError('ERR_LR_LIVE_TARGET_SIZE', `${targetPath} is not a regular file`);
      }
      bitmap = new RegionBitmap(identity.regionCount, map.bits);
      if (existing.size !== reader.size && bitmap.count === 0) {
        // Nothing recorded local, so nothing flushed can be lost: a crash while the target
        // was being created (before its size was set) is repaired by setting it now.
        try {
          await truncate(targetPath, reader.size);
        } catch (err) {
          throw targetIoError(err, targetPath, 'resizing');
        }
      } else if (existing.size !== reader.size) {
        throw new LiveError(
          'ERR_LR_LIVE_TARGET_SIZE',
          `${targetPath} is ${existing.size} bytes, but ${reader.name} of ${options.snapshot} is ${reader.size}: ` +
            'the target was truncated or replaced; remove the target directory and start over',
        );
      }
      try {
        handle = await open(targetPath, 'r+');
      } catch (err) {
        throw targetIoError(err, targetPath, 'opening');
      }
    } else {
      if (map !== undefined && new RegionBitmap(identity.regionCount, map.bits).count > 0) {
        throw new LiveError(
          'ERR_LR_LIVE_TARGET_MISSING',
          `${targetPath} is missing but its allocation map ${mapPath} records restored regions: ` +
            'the target was deleted; remove the map too to start over',
        );
      }
      // Map first: a target is never left without a map that names its snapshot.
      if (map === undefined)
        await writeMapFile(
          mapPath,
          encodeMap(identity, new Uint8Array(Math.ceil(identity.regionCount / 8)), 0),
        );
      try {
        handle = await open(targetPath, 'wx+', 0o644);
        await handle.truncate(reader.size);
        await handle.sync();
        await syncDir(dirname(targetPath));
      } catch (err) {
        throw targetIoError(err, targetPath, 'creating');
      }
      bitmap = new RegionBitmap(identity.regionCount);
      fresh = true;
    }
    const drive = new LiveDrive(
      reader,
      options.copyReader ?? reader,
      handle,
      targetPath,
      identity,
      bitmap,
      map?.generation ?? 0,
      fresh,
      options.priority ?? new GuestPriority(),
      options.fillSlots ?? new Semaphore(32),
    );
    if (fresh) {
      // A new sparse target reads as zeroes: its all-zero regions are restored already.
      for (let i = 0; i < drive.regionCount; i++) {
        if (reader.isZeroChunk(i)) {
          drive.#knownZero[i] = 1;
          drive.#markLocal(i);
        }
      }
      try {
        await drive.persist();
      } catch (err) {
        await handle.close();
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
    return this.#bitmap.has(i);
  }

  get complete(): boolean {
    return this.#bitmap.complete;
  }

  get regionsLocal(): number {
    return this.#bitmap.count;
  }

  get bytesLocal(): number {
    const last = this.regionCount - 1;
    return (
      this.#bitmap.count * this.regionBytes -
      (this.#bitmap.has(last) ? this.regionBytes - this.regionLength(last) : 0)
    );
  }

  stats(): LiveDriveStats {
    return {
      name: this.name,
      sizeBytes: this.size,
      regionBytes: this.regionBytes,
      regionCount: this.regionCount,
      regionsLocal: this.#bitmap.count,
      bytesLocal: this.bytesLocal,
      ...this.#stats,
      mapGeneration: this.#generation,
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

  #markLocal(i: number): void {
    this.#pristine[i] = 0;
    if (this.#bitmap.set(i)) {
      this.#changes++;
      this.onLocal?.(this);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new LiveError('ERR_LR_LIVE_CLOSED', `drive ${this.name} is closed`);
  }

  /** The regions overlapped by [offset, offset + length). */
  #regions(offset: number, length: number): { first: number; last: number } {
    return {
      first: Math.floor(offset / this.regionBytes),
      last: Math.floor((offset + length - 1) / this.regionBytes),
    };
  }

  async #fetchRegion(reader: CachedChunkReader, i: number, signal?: AbortSignal): Promise<Buffer> {
    if (this.#detached) throw new Error(`${this.name}: the backup was read after the restore completed`);
    const buffer = Buffer.allocUnsafe(this.regionLength(i));
    if (reader.isZeroChunk(i)) buffer.fill(0);
    else await reader.readAt(buffer, this.regionStart(i), signal);
    return buffer;
  }

  /**
   * Writes a full region buffer to the target (holding the region's lock). A pristine
   * region (a hole) skips all-zero 64 KiB blocks and stays sparse.
   */
  async #storeRegion(i: number, data: Buffer): Promise<void> {
    const start = this.regionStart(i);
    const pristine = this.#pristine[i] === 1;
    this.#pristine[i] = 0; // from here on it may hold part of the data
    try {
      if (pristine) {
        for (const [from, to] of dataExtents(data))
          await pwriteFull(this.#handle, data.subarray(from, to), start + from);
      } else {
        await pwriteFull(this.#handle, data, start);
      }
    } catch (err) {
      throw targetIoError(err, this.targetPath, 'writing');
    }
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
        await this.#zeroRegionForCopy(i);
        this.#markLocal(i);
        return 0;
      }
      const data = await this.#fetchRegion(this.#copyReader, i, signal);
      await this.#storeRegion(i, data);
      this.#markLocal(i);
      this.#stats.bytesCopied += data.length;
      return data.length;
    } finally {
      release();
    }
  }

  /**
   * A zero chunk not yet local: on a pristine region nothing to do; after a restart the
   * region may hold part of an interrupted write, so the non-zero blocks found are zeroed.
   */
  async #zeroRegionForCopy(i: number): Promise<void> {
    if (this.#pristine[i] === 1) {
      this.#knownZero[i] = 1;
      return;
    }
    const start = this.regionStart(i);
    const current = Buffer.allocUnsafe(this.regionLength(i));
    try {
      await preadFull(this.#handle, current, start);
      for (const [from, to] of dataExtents(current))
        await pwriteZeroes(this.#handle, to - from, start + from);
    } catch (err) {
      throw targetIoError(err, this.targetPath, 'zeroing');
    }
  }

  // ---- NbdExport ----------------------------------------------------------------------

  /** Fills `buffer` with the bytes at `offset` (within the image). */
  read(buffer: Buffer, offset: number, signal: AbortSignal): Promise<void> {
    return forNbd(this.#readImpl(buffer, offset, signal));
  }

  async #readImpl(buffer: Buffer, offset: number, signal: AbortSignal): Promise<void> {
    this.#checkOpen();
    if (buffer.length === 0) return;
    this.#stats.guestReads++;
    const { first, last } = this.#regions(offset, buffer.length);
    const pending: Promise<void>[] = [];
    let runStart = -1; // first region of the current run of local regions
    const flushRun = (endRegion: number): void => {
      if (runStart < 0) return;
      const from = Math.max(offset, this.regionStart(runStart));
      const to = Math.min(offset + buffer.length, this.regionStart(endRegion));
      pending.push(this.#readLocal(buffer.subarray(from - offset, to - offset), from));
      runStart = -1;
    };
    let fromBackup = false;
    for (let i = first; i <= last; i++) {
      if (this.isLocal(i)) {
        if (runStart < 0) runStart = i;
        continue;
      }
      flushRun(i);
      fromBackup = true;
      const from = Math.max(offset, this.regionStart(i));
      const to = Math.min(offset + buffer.length, this.regionStart(i) + this.regionLength(i));
      pending.push(this.#readRemote(i, buffer.subarray(from - offset, to - offset), from, signal));
    }
    flushRun(last + 1);
    if (fromBackup) this.#stats.guestReadsFromBackup++;
    const results = await Promise.allSettled(pending);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  async #readLocal(buffer: Buffer, position: number): Promise<void> {
    try {
      await preadFull(this.#handle, buffer, position);
    } catch (err) {
      throw targetIoError(err, this.targetPath, 'reading');
    }
  }

  /**
   * A read of part of a region not local: answered from the backup through the shared
   * cache, without the region's lock, so it never waits behind the copy or another fill
   * of that region (a write overlapping it is concurrent, and NBD leaves the order of
   * concurrent overlapping requests open). The region is then stored in the target in
   * the background (copy-on-read), so the next read of it is local.
   */
  async #readRemote(i: number, dest: Buffer, position: number, signal: AbortSignal): Promise<void> {
    if (this.#detached) throw new Error(`${this.name}: the backup was read after the restore completed`);
    this.#priority.enter();
    try {
      if (this.#reader.isZeroChunk(i)) dest.fill(0);
      else await this.#reader.readAt(dest, position, signal);
    } finally {
      this.#priority.leave();
    }
    this.#storeAfterRead(i);
  }

  /** Copy-on-read: stores region `i` in the target once, in the background, under its lock. */
  #storeAfterRead(i: number): void {
    if (this.isLocal(i) || this.#reader.isZeroChunk(i) || this.#storesAfterRead.has(i)) return;
    this.#storesAfterRead.add(i);
    const store = async (): Promise<void> => {
      const slot = await this.#fillSlots.acquire();
      const release = await this.#locks.acquire(i);
      try {
        if (this.isLocal(i) || this.#closed) return;
        const data = await this.#fetchRegion(this.#reader, i);
        this.#stats.bytesFilledForGuest += data.length;
        await this.#storeRegion(i, data);
        this.#markLocal(i);
      } finally {
        release();
        slot();
      }
    };
    void store()
      .catch((err: unknown) => {
        this.#stats.storeFailures++;
        this.onStoreError?.(targetIoError(err, this.targetPath, 'storing'), this);
      })
      .finally(() => this.#storesAfterRead.delete(i));
  }

  /** Allocation: regions not local whose chunk is all-zero, and known-zero local ones, are holes. */
  blockStatus(offset: number, length: number, maxExtents: number): AllocationExtent[] {
    const extents: AllocationExtent[] = [];
    const end = offset + length;
    for (let i = Math.floor(offset / this.regionBytes); i < this.regionCount; i++) {
      const from = Math.max(offset, this.regionStart(i));
      if (from >= end) break;
      const to = Math.min(end, this.regionStart(i) + this.regionLength(i));
      const zero = this.isLocal(i)
        ? this.#knownZero[i] === 1
        : !this.#detached && this.#reader.isZeroChunk(i) && this.#pristine[i] === 1;
      const last = extents[extents.length - 1];
      if (last !== undefined && last.zero === zero) last.length += to - from;
      else {
        if (extents.length >= maxExtents) break;
        extents.push({ length: to - from, hole: zero, zero });
      }
    }
    return extents;
  }

  async #write(data: Buffer, offset: number, fua: boolean): Promise<void> {
    this.#checkOpen();
    if (data.length > 0) {
      const { first, last } = this.#regions(offset, data.length);
      const pending: Promise<void>[] = [];
      for (let i = first; i <= last; i++) {
        const from = Math.max(offset, this.regionStart(i));
        const to = Math.min(offset + data.length, this.regionStart(i) + this.regionLength(i));
        pending.push(this.#writeRegion(i, from, to, data.subarray(from - offset, to - offset)));
      }
      await settleAll(pending);
      this.#stats.bytesWrittenByGuest += data.length;
    }
    if (fua) await this.persist();
  }

  async #zero(offset: number, length: number, fua: boolean): Promise<void> {
    this.#checkOpen();
    if (length > 0) {
      const { first, last } = this.#regions(offset, length);
      const pending: Promise<void>[] = [];
      for (let i = first; i <= last; i++) {
        const from = Math.max(offset, this.regionStart(i));
        const to = Math.min(offset + length, this.regionStart(i) + this.regionLength(i));
        pending.push(this.#writeRegion(i, from, to, undefined));
      }
      await settleAll(pending);
      this.#stats.bytesWrittenByGuest += length;
    }
    if (fua) await this.persist();
  }

  /** Applies guest bytes (`data`, or zeroes when undefined) to [from, to) of region `i`. */
  async #writeRegion(i: number, from: number, to: number, data: Buffer | undefined): Promise<void> {
    const start = this.regionStart(i);
    const whole = from === start && to === start + this.regionLength(i);
    if (this.isLocal(i)) {
      // Local regions are never written by the copy or a fill: no lock needed.
      this.#knownZero[i] = 0;
      await this.#apply(from, to, data);
      return;
    }
    this.#priority.enter();
    const release = await this.#locks.acquire(i);
    try {
      if (this.isLocal(i)) {
        this.#knownZero[i] = 0;
        await this.#apply(from, to, data);
        return;
      }
      if (whole) {
        if (data === undefined && this.#pristine[i] === 1) this.#knownZero[i] = 1;
        else {
          this.#pristine[i] = 0;
          await this.#apply(from, to, data);
        }
      } else {
        // Region-grain tracking: fill the region from the backup, put the guest's bytes
        // on top, write it once.
        const slot = await this.#fillSlots.acquire();
        try {
          const region = await this.#fetchRegion(this.#reader, i);
          if (!this.#reader.isZeroChunk(i)) this.#stats.bytesFilledForGuest += region.length;
          if (data === undefined) region.fill(0, from - start, to - start);
          else data.copy(region, from - start);
          await this.#storeRegion(i, region);
        } finally {
          slot();
        }
      }
      this.#markLocal(i);
    } finally {
      release();
      this.#priority.leave();
    }
  }

  async #apply(from: number, to: number, data: Buffer | undefined): Promise<void> {
    try {
      if (data === undefined) await pwriteZeroes(this.#handle, to - from, from);
      else await pwriteFull(this.#handle, data, from);
    } catch (err) {
      throw targetIoError(err, this.targetPath, 'writing');
    }
  }

  // ---- durability ---------------------------------------------------------------------

  /**
   * Makes every write completed before the call durable and records every region local
   * before the call in the map file: snapshot of the bitmap, fdatasync of the target,
   * atomic write of the map (skipped when no region became local since the last one).
   * Concurrent calls share one pass that has not started yet.
   */
  persist(): Promise<void> {
    if (this.#persistQueued !== undefined) return this.#persistQueued;
    const run = this.#persistTail
      .catch(() => undefined)
      .then(() => {
        this.#persistQueued = undefined;
        return this.#persistNow();
      });
    this.#persistQueued = run;
    this.#persistTail = run;
    return run;
  }

  async #persistNow(): Promise<void> {
    const changes = this.#changes;
    const bits = this.#bitmap.snapshot();
    try {
      await this.#handle.datasync();
    } catch (err) {
      throw targetIoError(err, this.targetPath, 'fdatasync of');
    }
    if (changes === this.#persistedChanges) return;
    const generation = this.#generation + 1;
    await writeMapFile(this.mapPath, encodeMap(this.identity, bits, generation));
    this.#generation = generation;
    this.#persistedChanges = changes;
  }

  /** True when regions became local since the map was last written. */
  get dirty(): boolean {
    return this.#changes !== this.#persistedChanges;
  }

  /** Waits for in-flight region work, persists, closes the target. Requests fail afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#locks.idle();
    try {
      await this.persist();
    } finally {
      await this.#handle.close();
    }
  }
}

/**
 * The NBD server reports an error's `code` when it is a POSIX one (ENOSPC → NBD_ENOSPC)
 * and EIO otherwise: a LiveError that knows its POSIX error is re-thrown with that code
 * (the LiveError, with its ERR_LR_ code, as `cause`).
 */
async function forNbd(work: Promise<void>): Promise<void> {
  try {
    await work;
  } catch (err) {
    if (err instanceof LiveError && err.errno !== undefined) {
      throw Object.assign(new Error(`${err.code}: ${err.message}`, { cause: err }), { code: err.errno });
    }
    throw err;
  }
}

async function settleAll(pending: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(pending);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}
