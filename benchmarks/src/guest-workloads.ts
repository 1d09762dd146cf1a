/**
 * What the guest stand-in (fio over NBD) does in `bench qemu` while the disk is copied:
 * random 64 KiB reads at queue depth 16 (throughput), random 4 KiB reads at queue depth
 * 1 (latency), or a boot-like trace replayed from an fio iolog. Amounts scale with the
 * image: the 512 MiB image gets 96 MiB of 64 KiB reads, 4 MiB of 4 KiB reads and a
 * boot trace of about 20 MiB.
 */

import { writeFile } from 'node:fs/promises';
import { prng } from '@liverestore/testkit';

/** The workloads `--workload` accepts, in report order. */
export const WORKLOADS = ['rand64k', 'rand4k', 'boot'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

const KiB = 1024;
const MiB = 1024 * KiB;
/** The image size the amounts are given for. */
const REFERENCE_BYTES = 512 * MiB;

/**
 * fio stops a job after this long even if it has not read everything (a hung export must
 * not hang the benchmark); the benchmark then fails, as the job read less than planned.
 */
export const GUEST_RUNTIME_LIMIT_SECONDS = 600;

/** One fio job of a workload, ready to run on any export. */
export interface GuestJob {
  readonly workload: WorkloadName;
  /** fio options after `--ioengine` and `--uri`. */
  readonly fioOptions: readonly string[];
  /** Bytes the job reads when it runs to the end. */
  readonly plannedBytes: number;
  /** One line for the report. */
  readonly description: string;
}

/** `bytes × size / 512 MiB`, rounded down to whole `unit`s, at least `minUnits` of them. */
function scaled(bytesAt512MiB: number, sizeBytes: number, unit: number, minUnits: number): number {
  const units = Math.floor((bytesAt512MiB * sizeBytes) / REFERENCE_BYTES / unit);
  return Math.max(minUnits, units) * unit;
}

/** One read of a trace. */
export interface TraceRead {
  readonly offset: number;
  readonly length: number;
}

const BLOCK = 4 * KiB;

/**
 * A deterministic boot-like read trace of a disk of `sizeBytes` (4 KiB aligned, inside
 * the disk), in three parts as a Linux boot reads its disk:
 * 1. boot loader and kernel: sequential reads from the start of the disk over 1/64 of
 *    it, growing from 4 KiB to 64 KiB as the kernel's readahead ramps up;
 * 2. file-system metadata: one 4 KiB read per 512 KiB of disk, 80 % of them near the
 *    starts of 16 block groups spread over the disk (within 1 MiB), the rest anywhere;
 * 3. program loading: one read of 128 KiB–1 MiB per 32 MiB of disk at random places,
 *    mixed among the metadata reads, each after two metadata reads near it.
 */
export function bootTraceReads(seed: number, sizeBytes: number): TraceRead[] {
  const rand = prng((seed * 2_654_435_761 + 0x5eed) >>> 0);
  const blocks = Math.floor(sizeBytes / BLOCK);
  const clampRead = (block: number, lengthBlocks: number): TraceRead => {
    const length = Math.min(lengthBlocks, blocks);
    const start = Math.max(0, Math.min(block, blocks - length));
    return { offset: start * BLOCK, length: length * BLOCK };
  };
  const reads: TraceRead[] = [];
  // 1. Sequential from block 0, 4 KiB doubling to 64 KiB.
  const kernelBlocks = Math.max(16, Math.floor(blocks / 64));
  for (let block = 0, len = 1; block < kernelBlocks; block += len, len = Math.min(16, len * 2))
    reads.push(clampRead(block, Math.min(len, kernelBlocks - block)));
  // 2 and 3, interleaved.
  const groups = 16;
  const groupBlocks = Math.floor(blocks / groups);
  const nearBlocks = Math.min(groupBlocks, MiB / BLOCK);
  const metadata = Math.max(16, Math.floor(sizeBytes / (512 * KiB)));
  const programs = Math.max(2, Math.floor(sizeBytes / (32 * MiB)));
  const metadataBlock = (): number =>
    rand() < 0.8
      ? Math.floor(rand() * groups) * groupBlocks + Math.floor(rand() * nearBlocks)
      : Math.floor(rand() * blocks);
  let programsLeft = programs;
  for (let i = 0; i < metadata; i++) {
    reads.push(clampRead(metadataBlock(), 1));
    if (programsLeft > 0 && rand() < programs / metadata) {
      const block = Math.floor(rand() * blocks);
      reads.push(clampRead(block + 2, 1), clampRead(block + 8, 1));
      reads.push(clampRead(block + 16, 32 * 2 ** Math.floor(rand() * 4)));
      programsLeft--;
    }
  }
  return reads;
}

/**
 * Writes `reads` as an fio iolog (version 2) for `--read_iolog`. fio's nbd engine
 * ignores the file name; the log still needs one.
 */
export async function writeIolog(path: string, reads: readonly TraceRead[]): Promise<void> {
  const file = 'disk';
  const lines = ['fio version 2 iolog', `${file} add`, `${file} open`];
  for (const r of reads) lines.push(`${file} read ${r.offset} ${r.length}`);
  lines.push(`${file} close`, '');
  await writeFile(path, lines.join('\n'));
}

/**
 * The fio job of `workload` on a disk of `sizeBytes`; the boot trace's iolog is written
 * to `iologPath`.
 */
export async function guestJob(
  workload: WorkloadName,
  sizeBytes: number,
  seed: number,
  iologPath: string,
): Promise<GuestJob> {
  switch (workload) {
    case 'rand64k': {
      const bytes = scaled(96 * MiB, sizeBytes, 64 * KiB, 16);
      return {
        workload,
        fioOptions: randomReads(64 * KiB, 16, bytes, sizeBytes, seed),
        plannedBytes: bytes,
        description: `random 64 KiB reads, queue depth 16, ${bytes / MiB} MiB in all`,
      };
    }
    case 'rand4k': {
      const bytes = scaled(4 * MiB, sizeBytes, 4 * KiB, 64);
      return {
        workload,
        fioOptions: randomReads(4 * KiB, 1, bytes, sizeBytes, seed),
        plannedBytes: bytes,
        description: `random 4 KiB reads, queue depth 1, ${bytes / (4 * KiB)} reads`,
      };
    }
    case 'boot': {
      const reads = bootTraceReads(seed, sizeBytes);
      await writeIolog(iologPath, reads);
      const bytes = reads.reduce((n, r) => n + r.length, 0);
      return {
        workload,
        fioOptions: [`--read_iolog=${iologPath}`, '--iodepth=1', `--runtime=${GUEST_RUNTIME_LIMIT_SECONDS}`],
        plannedBytes: bytes,
        description: `boot-like trace (seed ${seed}): ${reads.length} reads, ${(bytes / MiB).toFixed(1)} MiB, replayed at queue depth 1 without think time`,
      };
    }
  }
}

function randomReads(
  blockBytes: number,
  depth: number,
  bytes: number,
  sizeBytes: number,
  seed: number,
): string[] {
  return [
    '--rw=randread',
    `--bs=${blockBytes}`,
    `--iodepth=${depth}`,
    `--size=${sizeBytes}`,
    `--io_size=${bytes}`,
    `--randseed=${seed}`,
    `--runtime=${GUEST_RUNTIME_LIMIT_SECONDS}`,
  ];
}
