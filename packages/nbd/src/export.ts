import type {
  ArchiveReaderOptions,
  CachedChunkReader,
  ReadLease,
  ScratchBuffers,
  Snapshot,
} from '@liverestore/reader';

/** One run of the `base:allocation` context: `length` bytes that are all holes/zero or not. */
export interface AllocationExtent {
  length: number;
  /** No storage allocated (NBD_STATE_HOLE). */
  hole: boolean;
  /** Reads return zeroes (NBD_STATE_ZERO). */
  zero: boolean;
}

/**
 * What the NBD server exports: a device of `size` bytes. Read-only exports refuse every
 * write with EPERM; writable ones implement the write methods. The server checks every
 * request (validateRequest: range within `size`, reads at most 32 MiB, flags) before
 * calling; an error thrown with a `code` NBD has (`ENOSPC`, `EPERM`, `EINVAL`, `ENOMEM`
 * and their kin) is sent to the client as that NBD error, anything else as EIO.
 */
export interface NbdExport {
  readonly name: string;
  readonly size: number;
  /** Fills `buffer` with the bytes at `offset` (the range lies within the export). */
  read(buffer: Buffer, offset: number, signal: AbortSignal): Promise<void>;
  /**
   * Optional fast path: fills `buffer` without waiting and returns true when every byte
   * is at hand (e.g. cached); returns false (buffer contents unspecified) otherwise.
   */
  tryReadSync?(buffer: Buffer, offset: number): boolean;
  /**
   * Optional zero-copy read, preferred by the server when present: the `length` bytes at
   * `offset` lent where they lie (the cache's pinned pages), parts that cannot be lent
   * copied into buffers from `scratch`. The server writes the views to the socket and
   * releases the lease once the socket has taken them (or the connection is gone).
   */
  lease?(offset: number, length: number, signal: AbortSignal, scratch: ScratchBuffers): Promise<ReadLease>;
  /** Optional: {@link lease} without waiting, or undefined when it would have to wait. */
  tryLeaseSync?(offset: number, length: number, scratch: ScratchBuffers): ReadLease | undefined;
  /** Allocation extents covering [offset, offset + length), merged, at most `maxExtents`. */
  blockStatus(offset: number, length: number, maxExtents: number): AllocationExtent[];
  /** Present on writable exports: stores `data` at `offset`; durable on return when `fua`. */
  readonly writer?: NbdWriter;
}

/** The write side of a writable export (NBD_CMD_WRITE, WRITE_ZEROES, TRIM, FLUSH). */
export interface NbdWriter {
  write(data: Buffer, offset: number, fua: boolean): Promise<void>;
  /** Makes the range read as zeroes; may deallocate unless `noHole`. */
  writeZeroes(offset: number, length: number, fua: boolean, noHole: boolean): Promise<void>;
  /** A hint that the range is unused; after it the range may read as anything (we keep it defined). */
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  /** Every write completed (replied to) before this call is durable when it resolves. */
  flush(): Promise<void>;
}

/** A device cut in units (chunks, regions), each of which reads as zeroes or not. */
export interface ExtentUnits {
  readonly count: number;
  /** The unit holding byte `offset`. */
  indexAt(offset: number): number;
  /** Where unit `i` starts and ends, in bytes. */
  start(i: number): number;
  end(i: number): number;
  /** True when unit `i` reads as zeroes (reported as a hole). */
  zero(i: number): boolean;
}

/**
 * The allocation extents of [offset, end) over `units`, as `NbdExport.blockStatus`
 * answers: neighbouring units that agree on `zero` merged into one extent, at most
 * `maxExtents` (the reply then covers less than asked, which NBD allows).
 */
export function mergedExtents(
  units: ExtentUnits,
  offset: number,
  end: number,
  maxExtents: number,
): AllocationExtent[] {
  const extents: AllocationExtent[] = [];
  for (let i = units.indexAt(offset); i < units.count; i++) {
    const from = Math.max(offset, units.start(i));
    if (from >= end) break;
    const to = Math.min(end, units.end(i));
    const zero = units.zero(i);
    const last = extents[extents.length - 1];
    if (last !== undefined && last.zero === zero) last.length += to - from;
    else {
      if (extents.length >= maxExtents) break;
      extents.push({ length: to - from, hole: zero, zero });
    }
  }
  return extents;
}

/** A read-only export of one archive read through the shared cache. */
export function readerExport(reader: CachedChunkReader): NbdExport {
  const index = reader.index;
  return {
    name: reader.name,
    size: reader.size,
    async read(buffer, offset, signal) {
      await reader.readAt(buffer, offset, signal);
    },
    tryReadSync: (buffer, offset) => reader.tryReadAtSync(buffer, offset),
    lease: (offset, length, signal, scratch) => reader.leaseAt(offset, length, signal, scratch),
    tryLeaseSync: (offset, length, scratch) => reader.tryLeaseAtSync(offset, length, scratch),
    blockStatus: (offset, length, maxExtents) =>
      mergedExtents(
        {
          count: index.chunkCount,
          indexAt: (at) => index.chunkIndexAt(at),
          start: (i) => index.chunkStart(i),
          end: (i) => index.chunkEnd(i),
          zero: (i) => reader.isZeroChunk(i),
        },
        offset,
        offset + length,
        maxExtents,
      ),
  };
}

/** Read-only exports of every disk image (fixed-index archive) of a snapshot, in order. */
export async function snapshotExports(
  snapshot: Snapshot,
  options: ArchiveReaderOptions = {},
): Promise<NbdExport[]> {
  const exports: NbdExport[] = [];
  for (const archive of snapshot.archives) {
    if (archive.kind !== 'fixed') continue;
    exports.push(readerExport(await snapshot.openArchive(archive.name, options)));
  }
  return exports;
}
