/*
 * A little over 400 lines on purpose: one archive's read surface (readAt, the synchronous
 * fast path, leases, decode to a file, prefetch and the read stream), each a few lines over
 * the same walk from a byte range to its chunks (chunk-pieces.ts), which reads best in one
 * place. The parts with their own state are elsewhere: readahead in readahead.ts, leases in
 * read-lease.ts, the cache behind ChunkAccess in chunk-access.ts.
 */
import { Readable } from 'node:stream';
import { type ChunkIndex, type CryptConfig, chunkDigest, toHex } from '@liverestore/format';
import { settleAll } from '@liverestore/format/internal';
import type { ChunkAccess } from './chunk-access.js';
import { MAX_READAHEAD_CACHE_FRACTION } from './chunk-cache-options.js';
import { ChunkPieces } from './chunk-pieces.js';
import type { FileTarget } from './data-extents.js';
import {
  heapScratch,
  joinLeases,
  type ReadLease,
  type ScratchBuffers,
  scratchLease,
  settleLeases,
  viewLease,
  zeroLease,
} from './read-lease.js';
import { ReadaheadTracker } from './readahead.js';
import type { Lease } from './slot-table.js';

/** Default readahead window: chunks kept loading ahead of a sequential stream. */
export const DEFAULT_READAHEAD_CHUNKS = 8;

/** Options of a {@link CachedChunkReader}. */
export interface ArchiveReaderOptions {
  /** Readahead window in chunks for sequential streams; 0 turns readahead off. Default 8. */
  readaheadChunks?: number;
}

/**
 * Random access to one archive through the shared cache, like PBS's CachedChunkReader
 * but with the chunks of one read requested concurrently, all-zero chunks served without
 * a fetch, and readahead for sequential streams.
 */
export class CachedChunkReader {
  /** Image (or file) size in bytes. */
  readonly size: number;
  readonly #access: ChunkAccess;
  readonly #hex: string[];
  readonly #zeroHex: Map<number, string>;
  readonly #readahead: ReadaheadTracker;
  readonly #crypt: CryptConfig | undefined;

  /**
   * @param crypt the archive's key when encrypted: it keys the digest of the zero chunk.
   */
  constructor(
    readonly name: string,
    readonly index: ChunkIndex,
    access: ChunkAccess,
    crypt: CryptConfig | undefined,
    options: ArchiveReaderOptions = {},
  ) {
    this.size = index.sizeBytes;
    this.#access = access;
    this.#crypt = crypt;
    this.#hex = Array.from({ length: index.chunkCount }, (_, i) => toHex(index.digestAt(i)));
    // The all-zero chunk of a disk image is read often (unallocated space) and never needs
    // a fetch: recognise it by digest. Fixed indexes have at most two chunk lengths.
    this.#zeroHex = new Map();
    if (index.kind === 'fixed' && index.chunkCount > 0) {
      for (const length of new Set([
        index.chunkEnd(0) - index.chunkStart(0),
        index.chunkEnd(index.chunkCount - 1) - index.chunkStart(index.chunkCount - 1),
      ])) {
        this.#zeroHex.set(length, toHex(chunkDigest(new Uint8Array(length), crypt)));
      }
    }
    const requested = options.readaheadChunks ?? DEFAULT_READAHEAD_CHUNKS;
    if (!Number.isInteger(requested) || requested < 0)
      throw new RangeError('readaheadChunks must be a non-negative integer');
    // Fixed indexes: the first chunk is the largest; dynamic ones need a scan.
    const scanned = index.kind === 'fixed' ? Math.min(1, index.chunkCount) : index.chunkCount;
    let largestChunk = 1;
    for (let i = 0; i < scanned; i++)
      largestChunk = Math.max(largestChunk, index.chunkEnd(i) - index.chunkStart(i));
    const cap = Math.floor((access.capacityBytes * MAX_READAHEAD_CACHE_FRACTION) / Math.max(1, largestChunk));
    this.#readahead = new ReadaheadTracker(Math.min(requested, cap));
  }

  /**
   * Chunks readahead leaves alone because its owner holds them elsewhere (a live restore:
   * regions already in the target, or with a copy of their chunk there); readahead would
   * fetch and decode them for nothing.
   */
  skipPrefetch: ((chunk: number) => boolean) | undefined;

  /** Effective readahead window in chunks (after the cache-fraction cap). */
  get readaheadChunks(): number {
    return this.#readahead.windowChunks;
  }

  /** True when chunk `i` is the all-zero chunk (a hole: no fetch, reported as such by NBD). */
  isZeroChunk(i: number): boolean {
    const length = this.index.chunkEnd(i) - this.index.chunkStart(i);
    return this.#zeroHex.get(length) === this.#hex[i];
  }

  /** The digest of chunk `i` in hex: chunks with equal digests hold equal bytes. */
  digestHexAt(i: number): string {
    const hex = this.#hex[i];
    if (hex === undefined)
      throw new RangeError(`chunk ${i} is not in the index (${this.#hex.length} chunks)`);
    return hex;
  }

  /**
   * True when `data` is chunk `i`'s plaintext: its digest (keyed for an encrypted archive)
   * is the index's. Bytes of a chunk from anywhere but a decode (a copy kept elsewhere)
   * are checked with it before they are used.
   */
  holdsChunk(i: number, data: Uint8Array): boolean {
    const expected = this.index.digestAt(i);
    return (
      data.byteLength === this.index.chunkEnd(i) - this.index.chunkStart(i) &&
      chunkDigest(data, this.#crypt).equals(expected)
    );
  }

  /** True when this reader can decode chunks straight into a file: it lives on the cache's thread. */
  get decodesToFile(): boolean {
    return this.#access.decodeToFile !== undefined;
  }

  /**
   * Fetches chunk `i` and has a decode thread verify it and write it at every offset of
   * `file` (the restore path: the bytes never reach this thread). Resolves with the bytes
   * written; once it settles, no thread writes to `file.fd` for it. Only for readers with
   * {@link decodesToFile}.
   */
  decodeChunkToFile(i: number, file: FileTarget, signal?: AbortSignal): Promise<number> {
    const decodeToFile = this.#access.decodeToFile;
    if (decodeToFile === undefined)
      throw new TypeError("decodeChunkToFile needs a reader on the cache's thread (Snapshot.openArchive)");
    const length = this.index.chunkEnd(i) - this.index.chunkStart(i);
    return decodeToFile(this.digestHexAt(i), length, file, signal);
  }

  /**
   * Reads up to `buffer.length` bytes at `offset` (pread semantics): a read reaching past
   * the end is short, a read at or past the end returns 0. Every chunk the range touches
   * is requested at once; each is copied out and released as soon as it is ready.
   */
  async readAt(buffer: Uint8Array, offset: number, signal?: AbortSignal): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new RangeError(`offset must be a non-negative integer, got ${offset}`);
    const end = Math.min(this.size, offset + buffer.byteLength);
    if (end <= offset) return 0;
    const piece = new ChunkPieces(this.index, offset, end);
    const ahead = this.#readahead.observe(offset, end, piece.first, piece.last);
    const background = this.#readahead.sequential;
    const copies: Promise<void>[] = [];
    while (piece.next()) {
      const { chunk, chunkLength, chunkOffset, rangeOffset, count } = piece;
      if (this.isZeroChunk(chunk)) {
        buffer.fill(0, rangeOffset, rangeOffset + count);
        continue;
      }
      copies.push(
        this.#copyChunk(
          this.#hex[chunk]!,
          chunkLength,
          chunkOffset,
          buffer,
          rangeOffset,
          count,
          signal,
          background,
        ),
      );
    }
    if (ahead !== undefined) this.#prefetch(ahead.from, Math.min(ahead.to, this.index.chunkCount - 1));
    await settleAll(copies);
    return end - offset;
  }

  /** Copies `count` bytes at `chunkOffset` of one chunk: from the spill file when it is there, else through a lease. */
  async #copyChunk(
    hex: string,
    length: number,
    chunkOffset: number,
    buffer: Uint8Array,
    targetOffset: number,
    count: number,
    signal: AbortSignal | undefined,
    background: boolean,
  ): Promise<void> {
    const access = this.#access;
    if ((await access.readSpilled?.(hex, length, chunkOffset, buffer, targetOffset, count)) === true) return;
    const lease = await access.acquire(hex, length, signal, background);
    try {
      access.table.copyOut(lease, chunkOffset, buffer, targetOffset, count);
    } finally {
      access.release(lease);
    }
  }

  /**
   * {@link readAt} without waiting: fills `buffer` (the range must lie within the image)
   * and returns true when every chunk it touches is cached or all-zero; returns false as
   * soon as one is not (the buffer is then partly filled; call readAt). Readers in other
   * threads always return false. This is the hot path of warm NBD reads: no promise, no
   * allocation per chunk.
   */
  tryReadAtSync(buffer: Uint8Array, offset: number): boolean {
    const tryAcquire = this.#access.tryAcquire;
    const end = offset + buffer.byteLength;
    if (tryAcquire === undefined || !Number.isSafeInteger(offset) || offset < 0 || end > this.size)
      return false;
    if (end === offset) return true;
    const piece = new ChunkPieces(this.index, offset, end);
    while (piece.next()) {
      if (this.isZeroChunk(piece.chunk)) {
        buffer.fill(0, piece.rangeOffset, piece.rangeOffset + piece.count);
        continue;
      }
      const lease = tryAcquire(this.#hex[piece.chunk]!, piece.chunkLength);
      if (lease === undefined) return false;
      try {
        this.#access.table.copyOut(lease, piece.chunkOffset, buffer, piece.rangeOffset, piece.count);
      } finally {
        this.#access.release(lease);
      }
    }
    const ahead = this.#readahead.observe(offset, end, piece.first, piece.last);
    if (ahead !== undefined) this.#prefetch(ahead.from, Math.min(ahead.to, this.index.chunkCount - 1));
    return true;
  }

  /**
   * The bytes at [offset, offset + length) (within the image) lent rather than copied: a
   * chunk in memory is a view on its pinned pages (see {@link ReadLease}); a chunk read
   * from the spill file, or one the cache will not lend any more of (or a reader in another
   * thread), is copied into a buffer from `scratch`. Chunks are requested at once, as in
   * {@link readAt}; if one fails, the others are released and the error thrown.
   */
  async leaseAt(
    offset: number,
    length: number,
    signal?: AbortSignal,
    scratch: ScratchBuffers = heapScratch,
  ): Promise<ReadLease> {
    this.#checkRange(offset, length);
    if (length === 0) return zeroLease(0);
    const end = offset + length;
    const piece = new ChunkPieces(this.index, offset, end);
    const ahead = this.#readahead.observe(offset, end, piece.first, piece.last);
    const background = this.#readahead.sequential;
    const parts: Promise<ReadLease>[] = [];
    while (piece.next()) {
      const { chunk, chunkLength, chunkOffset, count } = piece;
      if (this.isZeroChunk(chunk)) parts.push(Promise.resolve(zeroLease(count)));
      else
        parts.push(
          this.#leaseChunk(this.#hex[chunk]!, chunkLength, chunkOffset, count, signal, background, scratch),
        );
    }
    if (ahead !== undefined) this.#prefetch(ahead.from, Math.min(ahead.to, this.index.chunkCount - 1));
    return settleLeases(parts);
  }

  /**
   * {@link leaseAt} without waiting: undefined as soon as one chunk is not in memory (or
   * with `scratch` undefined, one the cache will not lend: a lease then holds only the
   * cache's pages, never a copy, and is no read of the reader's stream: readahead does
   * not move; live restore pins a region this way to store it behind a guest read).
   * Chunks already pinned are released then. Readers in other threads always return
   * undefined.
   */
  tryLeaseAtSync(offset: number, length: number, scratch: ScratchBuffers | undefined): ReadLease | undefined {
    const tryAcquire = this.#access.tryAcquire;
    if (tryAcquire === undefined) return undefined;
    this.#checkRange(offset, length);
    if (length === 0) return zeroLease(0);
    const end = offset + length;
    const piece = new ChunkPieces(this.index, offset, end);
    const parts: ReadLease[] = [];
    while (piece.next()) {
      let part: ReadLease | undefined;
      if (this.isZeroChunk(piece.chunk)) part = zeroLease(piece.count);
      else {
        const lease = tryAcquire(this.#hex[piece.chunk]!, piece.chunkLength);
        if (lease !== undefined) part = this.#lend(lease, piece.chunkOffset, piece.count, scratch);
      }
      if (part === undefined) {
        for (const p of parts) p.release();
        return undefined;
      }
      parts.push(part);
    }
    if (scratch !== undefined) {
      const ahead = this.#readahead.observe(offset, end, piece.first, piece.last);
      if (ahead !== undefined) this.#prefetch(ahead.from, Math.min(ahead.to, this.index.chunkCount - 1));
    }
    return joinLeases(parts);
  }

  #checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0)
      throw new RangeError(`a lease needs a non-negative offset and length, got ${offset}, ${length}`);
    if (offset + length > this.size)
      throw new RangeError(`a lease of ${length} bytes at ${offset} reaches past the end (${this.size})`);
  }

  /** One chunk's part of a lease: from the spill file (copied), else a pinned lease lent or copied. */
  async #leaseChunk(
    hex: string,
    length: number,
    chunkOffset: number,
    count: number,
    signal: AbortSignal | undefined,
    background: boolean,
    scratch: ScratchBuffers,
  ): Promise<ReadLease> {
    const access = this.#access;
    // A buffer only for a spill read that can happen: a chunk in memory or on its way is
    // lent, and a 4 MiB scratch buffer per read taken for nothing was garbage.
    if (access.readSpilled !== undefined && access.isSpilled?.(hex, length) !== false) {
      const buffer = scratch.take(count);
      if (await access.readSpilled(hex, length, chunkOffset, buffer, 0, count))
        return scratchLease(buffer, scratch);
      scratch.give(buffer);
    }
    const lease = await access.acquire(hex, length, signal, background);
    return this.#lend(lease, chunkOffset, count, scratch)!;
  }

  /**
   * A pinned lease as part of a read lease: lent (views on its pages) when the cache
   * agrees, else copied into `scratch` and released (undefined and released without scratch).
   */
  #lend(
    lease: Lease,
    chunkOffset: number,
    count: number,
    scratch: ScratchBuffers | undefined,
  ): ReadLease | undefined {
    const access = this.#access;
    if (access.lend?.(lease) === true) {
      const returnLent = (): void => access.returnLent!(lease);
      let views: Buffer[];
      try {
        views = access.table.viewsOf(lease, chunkOffset, count);
      } catch (err) {
        returnLent();
        throw err;
      }
      return viewLease(views, access.table.pageBytes * lease.pages.length, returnLent);
    }
    try {
      if (scratch === undefined) return undefined;
      const buffer = scratch.take(count);
      access.table.copyOut(lease, chunkOffset, buffer, 0, count);
      return scratchLease(buffer, scratch);
    } finally {
      access.release(lease);
    }
  }

  #prefetch(from: number, to: number): void {
    for (let i = from; i <= to; i++) {
      if (!this.isZeroChunk(i) && this.skipPrefetch?.(i) !== true)
        this.#access.prefetch(this.#hex[i]!, this.index.chunkEnd(i) - this.index.chunkStart(i));
    }
  }

  /**
   * A Node Readable of bytes `start` … `end` (inclusive, as fs.createReadStream and HTTP
   * ranges count). Reads are sequential, so readahead keeps the next chunks decoding.
   */
  createReadStream(options: { start?: number; end?: number; highWaterMark?: number } = {}): Readable {
    const start = options.start ?? 0;
    const endExclusive = Math.min(this.size, (options.end ?? this.size - 1) + 1);
    const pieceBytes = options.highWaterMark ?? 1024 * 1024;
    if (!Number.isSafeInteger(start) || start < 0)
      throw new RangeError('start must be a non-negative integer');
    if (!Number.isSafeInteger(pieceBytes) || pieceBytes <= 0)
      throw new RangeError('highWaterMark must be a positive integer');
    if (options.end !== undefined && (!Number.isSafeInteger(options.end) || options.end < -1)) {
      throw new RangeError('end must be an integer ≥ -1 (inclusive, as in fs.createReadStream)');
    }
    let position = start;
    const controller = new AbortController();
    const stream: Readable = new Readable({
      highWaterMark: pieceBytes,
      read: () => {
        const length = Math.min(pieceBytes, endExclusive - position);
        if (length <= 0) {
          stream.push(null);
          return;
        }
        const piece = Buffer.allocUnsafe(length);
        const at = position;
        position += length;
        this.readAt(piece, at, controller.signal).then(
          (n) => {
            stream.push(piece.subarray(0, n));
          },
          (err: unknown) => stream.destroy(err as Error),
        );
      },
      destroy: (err, callback) => {
        controller.abort();
        callback(err);
      },
    });
    return stream;
  }
}
