/**
 * Writes past the page cache (O_DIRECT), for the restore's output (staged-writes.ts) and
 * the spill file (spill-store.ts): a second descriptor of the file, and shared memory
 * whose data starts on a system page boundary, as O_DIRECT needs of the memory it writes
 * from. A plain SharedArrayBuffer's data is page-aligned only when the allocator happens
 * to place it so (otherwise an O_DIRECT write from it fails with EINVAL); a shared
 * WebAssembly.Memory's always is.
 */
import { closeSync, constants, openSync, writev } from 'node:fs';
import { promisify } from 'node:util';
import { viewsAfter } from './byte-views.js';

const writevAsync = promisify(writev);

/** O_DIRECT's alignment of file offsets, lengths and memory (the largest logical block size in use). */
export const DIRECT_ALIGN_BYTES = 4096;

/**
 * How many of `length` bytes at file offset `position` O_DIRECT can take: the whole
 * alignment units from the start, when the start is on a boundary; else none.
 */
export function directPrefixBytes(position: number, length: number): number {
  return position % DIRECT_ALIGN_BYTES === 0 ? length - (length % DIRECT_ALIGN_BYTES) : 0;
}

/** The most buffers one writev takes (Linux's IOV_MAX). */
const MAX_IOVECS = 1024;

/** WebAssembly memory comes in 64 KiB pages. */
export const WASM_PAGE_BYTES = 64 * 1024;
/** The most a WebAssembly.Memory holds (65,536 pages of 64 KiB: 4 GiB). */
const WASM_MAX_BYTES = 65_536 * WASM_PAGE_BYTES;

/** The part of the WebAssembly global used here (the project's lib has no DOM types). */
const wasmMemory = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (descriptor: object) => { readonly buffer: SharedArrayBuffer } };
  }
).WebAssembly.Memory;

/** The buffers {@link pageAlignedSharedBuffer} made page-aligned. */
const pageAligned = new WeakSet<ArrayBufferLike>();

/**
 * A SharedArrayBuffer of exactly `bytes`, page-aligned where it can be: `bytes` a multiple
 * of 64 KiB up to 4 GiB. Otherwise a plain one (`aligned` false): O_DIRECT writes from it
 * may fail, and then their callers write through the page cache.
 */
export function pageAlignedSharedBuffer(bytes: number): { buffer: SharedArrayBuffer; aligned: boolean } {
  if (bytes === 0 || bytes % WASM_PAGE_BYTES !== 0 || bytes > WASM_MAX_BYTES)
    return { buffer: new SharedArrayBuffer(bytes), aligned: false };
  const pages = bytes / WASM_PAGE_BYTES;
  const buffer = new wasmMemory({ initial: pages, maximum: pages, shared: true }).buffer;
  pageAligned.add(buffer);
  return { buffer, aligned: true };
}

/**
 * True when O_DIRECT can write `view` from where it lies: memory of a page-aligned
 * {@link pageAlignedSharedBuffer} (the cache's arena), starting and ending on
 * {@link DIRECT_ALIGN_BYTES} boundaries.
 */
export function directWritable(view: Uint8Array): boolean {
  return (
    pageAligned.has(view.buffer) &&
    view.byteOffset % DIRECT_ALIGN_BYTES === 0 &&
    view.byteLength % DIRECT_ALIGN_BYTES === 0
  );
}

/**
 * A file's second descriptor, opened with O_DIRECT, for writes that skip the page cache.
 * {@link open} answers undefined where the file system refuses O_DIRECT; the first write
 * it refuses (EINVAL: memory, offsets or lengths it cannot take) turns it off for good,
 * and {@link write} answers 0 from then on: the caller writes through the page cache.
 */
export class DirectDescriptor {
  readonly #fd: number;
  #refused = false;
  /** Bytes written through it so far. */
  bytes = 0;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Opens `path` (which must exist) for O_DIRECT writes; undefined where that is refused. */
  static open(path: string): DirectDescriptor | undefined {
    try {
      return new DirectDescriptor(openSync(path, constants.O_WRONLY | constants.O_DIRECT));
    } catch {
      return undefined;
    }
  }

  /** One writev of `views` at `position`; the bytes written (0 once O_DIRECT was refused). */
  async write(views: Uint8Array[], position: number): Promise<number> {
    if (this.#refused) return 0;
    try {
      const { bytesWritten } = await writevAsync(this.#fd, views, position);
      this.bytes += bytesWritten;
      return bytesWritten;
    } catch (err) {
      if ((err as { code?: string }).code !== 'EINVAL') throw err;
      this.#refused = true;
      return 0;
    }
  }

  /**
   * Writes all of `views` at `position`: at most {@link MAX_IOVECS} views a writev, and
   * on after a short write that ends on an alignment boundary. The bytes written: fewer
   * when O_DIRECT was refused (0 from then on) or a short write left the rest unaligned,
   * and then the caller writes the rest through the page cache.
   */
  async writeAll(views: readonly Uint8Array[], position: number): Promise<number> {
    let rest: readonly Uint8Array[] = views;
    let done = 0;
    while (rest.length > 0) {
      const batch = rest.slice(0, MAX_IOVECS);
      let bytes = 0;
      for (const view of batch) bytes += view.byteLength;
      const written = await this.write(batch, position + done);
      done += written;
      if (written < bytes && (written === 0 || written % DIRECT_ALIGN_BYTES !== 0)) return done;
      rest = viewsAfter(rest, written);
    }
    return done;
  }

  /** Closes the descriptor; no write may be in flight. */
  close(): void {
    closeSync(this.#fd);
  }
}
