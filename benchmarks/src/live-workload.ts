/**
 * The workload of `bench live-restore`, modelled on a QEMU live restore (design.md):
 * per drive, one background copy job that reads the whole disk sequentially in 512 KiB
 * requests, one at a time (as block-stream does), while the guest boots: a seeded,
 * boot-like trace of random 4–256 KiB reads clustered in hot spots, issued in bursts of
 * up to 16 concurrent reads (QEMU's NBD queue depth) with think time between bursts.
 * The iteration ends when every drive's copy job has read its last byte; guest reads
 * still missing then are not issued (those in flight are awaited, not timed).
 *
 * The same code drives A and B, over NBD connections or in-process readers: anything
 * with `size` and `read(buffer, offset)` is a drive.
 */

import { performance } from 'node:perf_hooks';
import type { ChunkIndex } from '@liverestore/format';
import { prng } from '@liverestore/testkit';

/** Copy-job request size (QEMU block-stream). */
export const COPY_REQUEST_BYTES = 512 * 1024;
/** Guest reads in flight per drive at most (QEMU's NBD client). */
export const GUEST_QUEUE_DEPTH = 16;
/** Smallest and largest guest read. */
export const GUEST_MIN_READ = 4 * 1024;
export const GUEST_MAX_READ = 256 * 1024;
/** Hot spots per drive, their share of bursts and mean think time between bursts. */
export const HOT_SPOTS = 8;
export const HOT_SHARE = 0.8;
export const MEAN_THINK_MS = 5;
/** A hot spot covers this fraction of the disk (1/128). */
export const HOT_SPOT_FRACTION = 128;
const MIB_BLOCKS = (1024 * 1024) / 4096;

/** A drive as the workload sees it. */
export interface DriveTarget {
  readonly size: number;
  read(buffer: Uint8Array, offset: number): Promise<void>;
}

/** One guest read. */
export interface GuestRead {
  readonly offset: number;
  readonly length: number;
}

/** A burst of concurrent guest reads, then think time before the next burst. */
export interface GuestBurst {
  readonly reads: readonly GuestRead[];
  readonly thinkMs: number;
}

/** Default guest reads per drive: one per 2 MiB of disk (about 3.5% of its bytes). */
export function defaultGuestReads(sizeBytes: number): number {
  return Math.max(16, Math.round(sizeBytes / (2 * 1024 * 1024)));
}

/**
 * The boot-like trace of one drive. Each burst reads a run of 1–16 nearby blocks, like
 * a file being loaded: 80% of bursts start in one of 8 hot spots (OS directories, each
 * 1/128 of the disk, 1–64 MiB; the first is picked most, Zipf-like), the rest anywhere
 * on the disk. Read sizes
 * are 4 KiB × 2^k (k uniform in 0…6), 4 KiB aligned; within a burst each read starts
 * 0–64 KiB after the previous one ends. Think time is exponential, mean 5 ms.
 */
export function bootTrace(seed: number, drive: number, sizeBytes: number, reads: number): GuestBurst[] {
  const rand = prng((seed * 7919 + drive * 104_729 + 1) >>> 0);
  const blocks = Math.floor(sizeBytes / GUEST_MIN_READ);
  // Each hot spot is 1/128 of the disk (1 MiB … 64 MiB): 8 of them hold ~6% of it.
  const spotBlocks = Math.min(
    blocks,
    Math.max(MIB_BLOCKS, Math.min(64 * MIB_BLOCKS, Math.floor(blocks / HOT_SPOT_FRACTION))),
  );
  const spots = Array.from({ length: HOT_SPOTS }, () =>
    Math.floor(rand() * Math.max(1, blocks - spotBlocks)),
  );
  const weights = spots.map((_, i) => 1 / (i + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const pickSpot = (): number => {
    let r = rand() * total;
    for (let i = 0; i < spots.length; i++) {
      r -= weights[i]!;
      if (r <= 0) return spots[i]!;
    }
    return spots[spots.length - 1]!;
  };
  const bursts: GuestBurst[] = [];
  let left = reads;
  while (left > 0) {
    const count = Math.min(left, 1 + Math.floor(rand() * GUEST_QUEUE_DEPTH));
    let block =
      rand() < HOT_SHARE ? pickSpot() + Math.floor(rand() * spotBlocks) : Math.floor(rand() * blocks);
    const out: GuestRead[] = [];
    for (let i = 0; i < count; i++) {
      const lengthBlocks = 2 ** Math.floor(rand() * 7);
      if (block + lengthBlocks > blocks) block = Math.max(0, blocks - lengthBlocks);
      out.push({ offset: block * GUEST_MIN_READ, length: lengthBlocks * GUEST_MIN_READ });
      block += lengthBlocks + Math.floor(rand() * 17);
    }
    bursts.push({ reads: out, thinkMs: -Math.log(1 - rand()) * MEAN_THINK_MS });
    left -= count;
  }
  return bursts;
}

/**
 * Counts the chunk references of reads that need chunk data: chunks touched by a read,
 * the all-zero chunk excepted (neither design fetches it after the first time).
 */
export class ChunkRefCounter {
  refs = 0;
  readonly #zero: Uint8Array;

  constructor(
    readonly index: ChunkIndex,
    zeroDigests: ReadonlySet<string>,
  ) {
    this.#zero = new Uint8Array(index.chunkCount);
    for (let i = 0; i < index.chunkCount; i++) {
      if (zeroDigests.has(Buffer.from(index.digestAt(i)).toString('hex'))) this.#zero[i] = 1;
    }
  }

  count(offset: number, length: number): void {
    const first = this.index.chunkIndexAt(offset);
    const last = this.index.chunkIndexAt(offset + length - 1);
    for (let i = first; i <= last; i++) if (this.#zero[i] === 0) this.refs++;
  }
}

/** What one iteration measured (in the process that ran the workload). */
export interface WorkloadResult {
  /** Start to the end of the last copy job. */
  readonly seconds: number;
  /** Per drive: start to the end of its copy job. */
  readonly copySeconds: readonly number[];
  /** Latency of every completed guest read, milliseconds, in completion order. */
  readonly guestLatenciesMs: readonly number[];
  readonly guestReadsPlanned: number;
  readonly guestBytes: number;
  /** Chunk references by all reads (zero chunk excepted), when counters were given. */
  readonly chunkRefs: number;
}

/** Runs the copy jobs and guest traces on `drives` until every copy job is done. */
export async function runWorkload(
  drives: readonly DriveTarget[],
  traces: readonly (readonly GuestBurst[])[],
  counters?: readonly ChunkRefCounter[],
): Promise<WorkloadResult> {
  const latencies: number[] = [];
  let guestBytes = 0;
  let copiesLeft = drives.length;
  const copySeconds: number[] = new Array(drives.length).fill(0);
  const t0 = performance.now();
  let copiesDone: () => void = () => {};
  const allCopied = new Promise<void>((resolve) => {
    copiesDone = resolve;
  });
  let stopGuests = false;
  const cancels = new Set<() => void>();

  const copy = async (d: number): Promise<void> => {
    const drive = drives[d]!;
    const buffer = new Uint8Array(COPY_REQUEST_BYTES);
    for (let at = 0; at < drive.size; at += COPY_REQUEST_BYTES) {
      const n = Math.min(COPY_REQUEST_BYTES, drive.size - at);
      counters?.[d]?.count(at, n);
      await drive.read(n === buffer.length ? buffer : buffer.subarray(0, n), at);
    }
    copySeconds[d] = (performance.now() - t0) / 1000;
    if (--copiesLeft === 0) {
      stopGuests = true;
      for (const cancel of cancels) cancel();
      copiesDone();
    }
  };

  const guest = async (d: number): Promise<void> => {
    const drive = drives[d]!;
    for (const burst of traces[d] ?? []) {
      if (stopGuests) return;
      await Promise.all(
        burst.reads.map(async (r) => {
          const buffer = new Uint8Array(r.length);
          counters?.[d]?.count(r.offset, r.length);
          const t = performance.now();
          await drive.read(buffer, r.offset);
          if (!stopGuests) {
            latencies.push(performance.now() - t);
            guestBytes += r.length;
          }
        }),
      );
      if (stopGuests) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, burst.thinkMs);
        function done(): void {
          clearTimeout(timer);
          cancels.delete(done);
          resolve();
        }
        cancels.add(done);
      });
    }
  };

  const copies = drives.map((_, d) => copy(d));
  const guests = drives.map((_, d) => guest(d));
  const failed = Promise.all([...copies, ...guests]).then(
    () => undefined,
    (error: unknown) => error,
  );
  const first = await Promise.race([allCopied.then(() => undefined), failed]);
  if (first !== undefined) throw first;
  const seconds = (performance.now() - t0) / 1000;
  const error = await failed;
  if (error !== undefined) throw error;
  return {
    seconds,
    copySeconds,
    guestLatenciesMs: latencies,
    guestReadsPlanned: traces.reduce((n, t) => n + t.reduce((m, b) => m + b.reads.length, 0), 0),
    guestBytes,
    chunkRefs: counters?.reduce((n, c) => n + c.refs, 0) ?? 0,
  };
}

/** The value below which `p` percent of the sorted values lie (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
