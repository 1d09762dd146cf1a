import { closeSync, openSync, read, unlinkSync, writev } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DIRECT_ALIGN_BYTES, DirectDescriptor } from './direct-io.js';
import { ReaderError } from './errors.js';

const readAsync = promisify(read);
const writevAsync = promisify(writev);

/*
 * The spill tier: decoded chunks that leave the memory arena go to one local file instead
 * of being dropped, so a chunk read again is a pread of the bytes asked for, never a second
 * fetch and decode. The file is a second page arena: the same page size as the memory
 * arena, a free-page list, and per chunk a list of file pages, so any free pages hold any
 * chunk and nothing fragments.
 *
 *   spill file:  | page 0 | page 1 | page 2 | … | page N-1 |      N = capacityBytes / pageBytes
 *   entry:       digest → { length, pages: [7, 8, 9, 2], pins }  (chunk byte i lives in
 *                pages[i / pageBytes] at i % pageBytes)
 *
 * Spilled chunks are immutable (a digest names its bytes), so a chunk is written at most
 * once and an entry can be dropped at any time it is not being read. The file is unlinked
 * right after it is opened: nothing is left behind, whatever way the process ends.
 */

/** Default bound of the spill file: what a restore of a few large disks needs. */
export const DEFAULT_SPILL_BYTES = 16 * 1024 * 1024 * 1024;

/** Options of {@link SpillStore.create}. */
export interface SpillStoreOptions {
  /** Directory for the (immediately unlinked) spill file; it must be on a local disk. */
  dir: string;
  /** Most bytes of chunks the file holds; the least recently read go first. Default 16 GiB. */
  capacityBytes?: number;
  /** Page size; must equal the memory arena's. */
  pageBytes: number;
  /**
   * Write chunks with O_DIRECT where the file system and the cache's memory allow it
   * (past the page cache, see SpillStore). Default true; false writes through the page cache.
   */
  directWrites?: boolean;
}

/** Counters of {@link SpillStore.stats}. */
export interface SpillStats {
  /** Chunks written to the file. */
  writes: number;
  /** Reads served from the file. */
  reads: number;
  /** Chunks dropped from the file to make room. */
  evictions: number;
  /** Writes that failed (a full disk, an I/O error); the chunk is simply not spilled. */
  writeFailures: number;
  /** Bytes written with O_DIRECT, whole pages (the rest went through the page cache). */
  directBytes: number;
  /** Chunks in the file now. */
  chunks: number;
  /** Bytes of pages in use now. */
  usedBytes: number;
  capacityBytes: number;
}

interface Entry {
  readonly length: number;
  readonly pages: Int32Array;
  /** Reads in flight; an entry is dropped only at zero. */
  pins: number;
}

/** A run of consecutive file pages, written or read with one system call. */
interface PageRun {
  readonly firstIndex: number;
  readonly count: number;
}

/**
 * A bounded file of decoded chunks keyed by digest (see the layout above). Single-threaded:
 * it belongs to the thread of the cache that spills into it.
 */
export class SpillStore {
  readonly #fd: number;
  /**
   * The same file opened with O_DIRECT, for writes: a chunk goes from the cache's pages to
   * the disk without a copy into page-cache pages, which on a VM that hands freed memory
   * back to its host cost ≈ 2.5 ms of kernel CPU per 4 MiB (docs/benchmarks.md). Undefined
   * where the file system or the memory refuses it (then writes go through `#fd`).
   */
  readonly #direct: DirectDescriptor | undefined;
  readonly pageBytes: number;
  readonly capacityBytes: number;
  /** Stored chunks in least-recently-read-first order (a Map keeps insertion order). */
  readonly #entries = new Map<string, Entry>();
  /** Chunks being written: not readable yet, and not written twice. */
  readonly #writing = new Set<string>();
  readonly #freePages: number[] = [];
  #closed = false;
  /** Reads and writes on the file descriptor now; close() waits for them (the fd must not be reused under them). */
  #ioInFlight = 0;
  readonly #idle: (() => void)[] = [];
  readonly #stats = { writes: 0, reads: 0, evictions: 0, writeFailures: 0 };

  private constructor(
    fd: number,
    direct: DirectDescriptor | undefined,
    capacityBytes: number,
    pageBytes: number,
  ) {
    this.#fd = fd;
    this.#direct = direct;
    this.pageBytes = pageBytes;
    const pageCount = Math.floor(capacityBytes / pageBytes);
    this.capacityBytes = pageCount * pageBytes;
    for (let page = pageCount - 1; page >= 0; page--) this.#freePages.push(page);
  }

  /** Creates the spill file in `dir` and unlinks it at once (it lives as long as the store is open). */
  static create(options: SpillStoreOptions): SpillStore {
    const capacityBytes = options.capacityBytes ?? DEFAULT_SPILL_BYTES;
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes < options.pageBytes)
      throw new RangeError(
        `spill capacityBytes must be an integer of at least one page (${options.pageBytes})`,
      );
    const path = join(
      options.dir,
      `.liverestore-spill-${process.pid}-${Math.random().toString(36).slice(2)}`,
    );
    let fd: number;
    try {
      fd = openSync(path, 'wx+', 0o600);
    } catch (cause) {
      throw new ReaderError(
        'ERR_LR_SPILL_DIR',
        `cannot create a spill file in ${options.dir}: ${(cause as Error).message}`,
        { cause },
      );
    }
    const direct =
      options.directWrites !== false && options.pageBytes % DIRECT_ALIGN_BYTES === 0
        ? DirectDescriptor.open(path)
        : undefined; // without O_DIRECT (or off), writes go through the page cache
    try {
      unlinkSync(path);
    } catch (cause) {
      closeSync(fd);
      direct?.close();
      throw new ReaderError('ERR_LR_SPILL_DIR', `cannot use a spill file in ${options.dir}`, { cause });
    }
    return new SpillStore(fd, direct, capacityBytes, options.pageBytes);
  }

  /** True when the chunk can be read from the file now. */
  has(digestHex: string): boolean {
    return this.#entries.has(digestHex);
  }

  /** Chunks being written now. */
  get writesInFlight(): number {
    return this.#writing.size;
  }

  /** True when the chunk is stored or on its way: spilling it again would be wasted. */
  holdsOrWrites(digestHex: string): boolean {
    return this.#entries.has(digestHex) || this.#writing.has(digestHex);
  }

  /** The chunk's length when it is stored. */
  lengthOf(digestHex: string): number | undefined {
    return this.#entries.get(digestHex)?.length;
  }

  /** Pages a chunk of `length` bytes needs. */
  #pagesFor(length: number): number {
    return Math.max(1, Math.ceil(length / this.pageBytes));
  }

  /**
   * Writes a chunk whose bytes are `source` pages of the memory arena (`arena` is the whole
   * arena, pages of the same size as the file's). The caller keeps those pages unchanged
   * until the promise settles. Resolves true once the chunk is readable from the file,
   * false when it could not be stored (no room left by chunks being read, a full disk, an
   * I/O error): a spill is an optimisation, so it never fails its caller.
   */
  async put(digestHex: string, length: number, arena: Uint8Array, source: Int32Array): Promise<boolean> {
    if (this.#closed || this.holdsOrWrites(digestHex)) return false;
    const pageCount = this.#pagesFor(length);
    if (!this.#makeRoom(pageCount)) return false;
    // Popped one by one: a fresh file hands out ascending pages, so one writev covers a chunk.
    const pages = new Int32Array(pageCount);
    for (let i = 0; i < pageCount; i++) pages[i] = this.#freePages.pop()!;
    this.#writing.add(digestHex);
    this.#ioInFlight++;
    try {
      for (const run of pageRuns(pages)) {
        const position = pages[run.firstIndex]! * this.pageBytes;
        if (await this.#writeDirect(run, arena, source, position)) continue;
        await writeAll(this.#fd, this.#runViews(run, arena, source, length), position);
      }
    } catch {
      this.#stats.writeFailures++;
      this.#writing.delete(digestHex);
      for (const page of pages) this.#freePages.push(page);
      return false;
    } finally {
      this.#ioDone();
    }
    this.#writing.delete(digestHex);
    if (this.#closed) return false;
    this.#entries.set(digestHex, { length, pages, pins: 0 });
    this.#stats.writes++;
    return true;
  }

  /**
   * The arena's views of a run of a chunk's pages (`source[i]` holds the chunk's page i):
   * whole pages, or cut at the chunk's end with its `length`.
   */
  #runViews(run: PageRun, arena: Uint8Array, source: Int32Array, length: number | undefined): Uint8Array[] {
    const views: Uint8Array[] = [];
    for (let i = run.firstIndex; i < run.firstIndex + run.count; i++) {
      const start = source[i]! * this.pageBytes;
      const bytes =
        length === undefined ? this.pageBytes : Math.min(this.pageBytes, length - i * this.pageBytes);
      views.push(arena.subarray(start, start + bytes));
    }
    return views;
  }

  /**
   * Writes a run of whole pages with O_DIRECT (the last page's bytes past the chunk's end
   * are garbage of a page the chunk owns, never read); false when it cannot (no O_DIRECT
   * descriptor, or the first write was refused: EINVAL, e.g. memory that is not
   * page-aligned), and the caller writes the run through the page cache.
   */
  async #writeDirect(
    run: PageRun,
    arena: Uint8Array,
    source: Int32Array,
    position: number,
  ): Promise<boolean> {
    if (this.#direct === undefined) return false;
    const views = this.#runViews(run, arena, source, undefined);
    const written = await this.#direct.write(views, position);
    if (written === 0) return false; // refused for good: the page cache from now on
    if (written !== run.count * this.pageBytes)
      throw new Error(`short write to the spill file (${written} of ${run.count * this.pageBytes})`);
    return true;
  }

  /**
   * Reads `count` bytes at `chunkOffset` of a stored chunk into `target` at `targetOffset`.
   * Resolves false when the chunk is not stored (the caller loads it the usual way).
   */
  async read(
    digestHex: string,
    chunkOffset: number,
    target: Uint8Array,
    targetOffset: number,
    count: number,
  ): Promise<boolean> {
    const entry = this.#entries.get(digestHex);
    if (entry === undefined || this.#closed) return false;
    if (chunkOffset < 0 || count < 0 || chunkOffset + count > entry.length)
      throw new RangeError(`read of ${count} bytes at ${chunkOffset} is outside a chunk of ${entry.length}`);
    // Most recently read last: the least recently read entry is evicted first.
    this.#entries.delete(digestHex);
    this.#entries.set(digestHex, entry);
    entry.pins++;
    this.#ioInFlight++;
    try {
      let done = 0;
      while (done < count) {
        const at = chunkOffset + done;
        const index = Math.floor(at / this.pageBytes);
        // Extend over file pages that follow each other, so one pread covers them.
        let runPages = 1;
        while (
          index + runPages < entry.pages.length &&
          entry.pages[index + runPages] === entry.pages[index]! + runPages &&
          (index + runPages) * this.pageBytes < chunkOffset + count
        )
          runPages++;
        const inPage = at % this.pageBytes;
        const n = Math.min(runPages * this.pageBytes - inPage, count - done);
        const position = entry.pages[index]! * this.pageBytes + inPage;
        const { bytesRead } = await readAsync(this.#fd, target, targetOffset + done, n, position);
        if (bytesRead !== n)
          throw new ReaderError('ERR_LR_SPILL_IO', `short read from the spill file at ${position}`);
        done += n;
      }
    } finally {
      entry.pins--;
      this.#ioDone();
    }
    this.#stats.reads++;
    return true;
  }

  /** Frees least recently read entries not being read until `pageCount` pages are free. */
  #makeRoom(pageCount: number): boolean {
    if (this.#freePages.length >= pageCount) return true;
    let free = this.#freePages.length;
    const victims: string[] = [];
    for (const [hex, entry] of this.#entries) {
      if (free >= pageCount) break;
      if (entry.pins > 0) continue;
      victims.push(hex);
      free += entry.pages.length;
    }
    if (free < pageCount) return false;
    for (const hex of victims) {
      const entry = this.#entries.get(hex)!;
      this.#entries.delete(hex);
      for (const page of entry.pages) this.#freePages.push(page);
      this.#stats.evictions++;
    }
    return true;
  }

  stats(): SpillStats {
    const pageCount = this.capacityBytes / this.pageBytes;
    return {
      ...this.#stats,
      directBytes: this.#direct?.bytes ?? 0,
      chunks: this.#entries.size,
      usedBytes: (pageCount - this.#freePages.length) * this.pageBytes,
      capacityBytes: this.capacityBytes,
    };
  }

  /**
   * Walks the bookkeeping and throws if an invariant does not hold: every page is free,
   * being written or owned by exactly one entry; pins are never negative. For tests.
   */
  checkInvariants(): void {
    const pageCount = this.capacityBytes / this.pageBytes;
    const owner = new Int8Array(pageCount);
    const claim = (page: number, what: string): void => {
      if (page < 0 || page >= pageCount)
        throw new Error(`spill invariant violated: ${what} page ${page} out of range`);
      if (owner[page] !== 0) throw new Error(`spill invariant violated: page ${page} owned twice (${what})`);
      owner[page] = 1;
    };
    for (const page of this.#freePages) claim(page, 'free');
    let owned = this.#freePages.length;
    for (const [hex, entry] of this.#entries) {
      if (entry.pins < 0) throw new Error(`spill invariant violated: ${hex} has negative pins`);
      if (entry.pages.length !== this.#pagesFor(entry.length))
        throw new Error(
          `spill invariant violated: ${hex} has ${entry.pages.length} pages for ${entry.length} bytes`,
        );
      for (const page of entry.pages) claim(page, hex);
      owned += entry.pages.length;
    }
    // Pages of chunks being written are off the free list and in no entry yet.
    if (this.#writing.size === 0 && owned !== pageCount)
      throw new Error(`spill invariant violated: ${pageCount - owned} pages are lost`);
  }

  #ioDone(): void {
    if (--this.#ioInFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  /**
   * Closes the file (already unlinked, so its space returns to the file system) once the
   * reads and writes in flight have finished; no new ones start.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#entries.clear();
    if (this.#ioInFlight > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
    closeSync(this.#fd);
    this.#direct?.close();
  }
}

/** One writev of `views` at `position`; a short write (only a full disk makes one) is an error. */
async function writeAll(fd: number, views: Uint8Array[], position: number): Promise<void> {
  const expected = views.reduce((n, view) => n + view.byteLength, 0);
  const { bytesWritten } = await writevAsync(fd, views, position);
  if (bytesWritten !== expected)
    throw new Error(`short write to the spill file (${bytesWritten} of ${expected})`);
}

/** Splits a page list into runs of consecutive pages. */
function pageRuns(pages: Int32Array): PageRun[] {
  const runs: PageRun[] = [];
  let first = 0;
  for (let i = 1; i <= pages.length; i++) {
    if (i === pages.length || pages[i] !== pages[i - 1]! + 1) {
      runs.push({ firstIndex: first, count: i - first });
      first = i;
    }
  }
  return runs;
}
