/**
 * `pnpm bench backup`: backup throughput of a synthetic VM disk image for each
 * compression (zstd, the default; deflate, the default before; none) with the chunk
 * encoder inline, on one thread and on the default pool, and of an incremental backup
 * where every chunk is already stored (read + hash + dedup only). Comparing the cases
 * shows where backup time goes: compression, hashing or I/O.
 */

import { spawn } from 'node:child_process';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Compression, zstdCodecInfo } from '@liverestore/format';
import { imageRegions, vmImageSet, writeImageFile } from '@liverestore/testkit';
import type { BackupSample, BackupTask } from './backup-child.js';
import type { BenchContext, Benchmark } from './benchmark.js';
import { UsageError } from './errors.js';
import { machineInfo } from './machine.js';
import { VM_SEED_OPTION } from './options.js';
import {
  type BenchResult,
  type CaseResult,
  type DetailColumn,
  measuredCase,
  type PlainTable,
} from './result.js';
import { mean } from './stats.js';
import {
  formatBytes,
  formatDuration,
  formatNumber,
  formatRate,
  mbPerSecond,
  parseBytes,
  parseList,
  parseNonNegativeInt,
} from './units.js';

const CHILD = fileURLToPath(new URL('./backup-child.js', import.meta.url));
const DEFAULT_SIZE_BYTES = 2 * 1024 ** 3;
const CHUNK_BYTES = 4 * 1024 * 1024;
const COMPRESSIONS: readonly Compression[] = ['zstd', 'deflate', 'none'];
/** The compression the speed-up table divides by: the default before zstd became one everywhere. */
const BASELINE_COMPRESSION: Compression = 'deflate';

interface Settings {
  readonly samples: number;
  readonly sizeBytes: number;
  readonly seed: number;
  readonly threads: readonly number[];
  readonly incremental: boolean;
  readonly compressions: readonly Compression[];
  readonly dir: string;
}

function readSettings(context: BenchContext): Settings {
  const o = context.options;
  const threads =
    typeof o.threads === 'string'
      ? parseList(o.threads).map((t) => parseNonNegativeInt(t, '--threads'))
      : [0, 1, availableParallelism()];
  const compressions = typeof o.compress === 'string' ? parseList(o.compress) : [...COMPRESSIONS];
  for (const compress of compressions) {
    if (!(COMPRESSIONS as readonly string[]).includes(compress)) {
      throw new UsageError(`--compress must list some of ${COMPRESSIONS.join(', ')}, got "${compress}"`);
    }
  }
  if (compressions.length === 0) throw new UsageError('--compress must name at least one compression');
  const sizeBytes = typeof o.size === 'string' ? parseBytes(o.size, '--size') : DEFAULT_SIZE_BYTES;
  if (sizeBytes <= 0) throw new UsageError('--size must be positive');
  if (threads.length === 0 && o['skip-incremental'] === true) throw new UsageError('nothing to run');
  return {
    samples: context.samples,
    sizeBytes,
    seed: typeof o.seed === 'string' ? parseNonNegativeInt(o.seed, '--seed') : 1,
    threads: [...new Set(threads)],
    incremental: o['skip-incremental'] !== true,
    compressions: [...new Set(compressions)] as Compression[],
    dir: typeof o.dir === 'string' ? o.dir : tmpdir(),
  };
}

/** Runs one backup in a child process and returns what it measured. */
function runChild(task: BackupTask): Promise<BackupSample> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, JSON.stringify(task)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      stdout += text;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`backup child for ${task.label} exited with ${signal ?? `status ${code}`}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as BackupSample);
      } catch (cause) {
        reject(new Error(`backup child for ${task.label} printed no result`, { cause }));
      }
    });
  });
}

function caseName(compress: Compression, threads: number, defaultThreads: number): string {
  if (threads === 0) return `${compress}, full, encodeThreads 0 (inline)`;
  return `${compress}, full, encodeThreads ${threads}${threads === defaultThreads ? ' (default)' : ''}`;
}

/** Each compression's throughput over the baseline's, at the same encodeThreads. */
function speedupTable(cases: readonly CaseResult[], settings: Settings, defaultThreads: number): PlainTable {
  const rows: string[][] = [];
  for (const threads of settings.threads) {
    const base = cases.find((c) => c.name === caseName(BASELINE_COMPRESSION, threads, defaultThreads));
    for (const compress of settings.compressions) {
      if (compress === BASELINE_COMPRESSION) continue;
      const other = cases.find((c) => c.name === caseName(compress, threads, defaultThreads));
      if (base?.throughputMBps === undefined || other?.throughputMBps === undefined) continue;
      rows.push([
        `encodeThreads ${threads}`,
        compress,
        formatRate(other.throughputMBps),
        formatRate(base.throughputMBps),
        `${formatNumber(other.throughputMBps / base.throughputMBps)}×`,
      ]);
    }
  }
  return {
    title: `Speed-up over --compress ${BASELINE_COMPRESSION} (same run, same encodeThreads)`,
    columns: ['encoder', 'compress', 'MB/s', `${BASELINE_COMPRESSION} MB/s`, 'speed-up'],
    rows,
  };
}

const INCREMENTAL_NAME = 'incremental, all chunks reused';

const COLUMNS: readonly DetailColumn[] = [
  { key: 'chunksNew', label: 'chunks new', format: 'integer' },
  { key: 'chunksReused', label: 'chunks reused', format: 'integer' },
  { key: 'bytesWritten', label: 'written', format: 'bytes' },
  { key: 'cpuUserSeconds', label: 'CPU user', format: 'seconds' },
  { key: 'cpuSystemSeconds', label: 'CPU sys', format: 'seconds' },
  { key: 'cpuCores', label: 'cores used', format: 'decimal' },
  { key: 'otherCores', label: "others' cores", format: 'decimal' },
  { key: 'peakRssBytes', label: 'peak RSS', format: 'bytes' },
];

function summarizeCase(name: string, sizeBytes: number, samples: readonly BackupSample[]): CaseResult {
  const last = samples.at(-1)!;
  return measuredCase(
    name,
    sizeBytes,
    samples.map((s) => s.seconds),
    {
      chunksNew: last.chunksNew,
      chunksReused: last.chunksReused,
      bytesWritten: last.bytesWritten,
      cpuSeconds: mean(samples.map((s) => s.cpuSeconds)),
      cpuUserSeconds: mean(samples.map((s) => s.cpuUserSeconds)),
      cpuSystemSeconds: mean(samples.map((s) => s.cpuSystemSeconds)),
      cpuCores: mean(samples.map((s) => s.cpuSeconds / s.seconds)),
      ...(samples.every((s) => s.otherCpuSeconds !== undefined)
        ? { otherCores: mean(samples.map((s) => s.otherCpuSeconds! / s.seconds)) }
        : {}),
      peakRssBytes: Math.max(...samples.map((s) => s.peakRssBytes)),
      zeroChunks: last.zeroChunks,
    },
  );
}

async function fileSystemOf(dir: string): Promise<string> {
  try {
    const s = await statfs(dir);
    return `type 0x${s.type.toString(16)}, ${formatBytes(s.bavail * s.bsize)} free`;
  } catch {
    return 'unknown';
  }
}

async function runBackup(context: BenchContext): Promise<BenchResult> {
  const started = performance.now();
  const machine = machineInfo();
  const settings = readSettings(context);
  const defaultThreads = availableParallelism();
  const [drive] = vmImageSet(settings.seed, { drives: 1, sizeBytes: settings.sizeBytes });
  const spec = drive!.spec;
  const scratch = await mkdtemp(join(settings.dir, 'liverestore-bench-'));
  const cleanups: Promise<void>[] = [];
  try {
    const imagePath = join(scratch, `${drive!.name}.raw`);
    context.progress(`writing a ${formatBytes(settings.sizeBytes)} sparse image to ${imagePath}`);
    const writeStart = performance.now();
    const written = await writeImageFile(spec, imagePath);
    const writeSeconds = (performance.now() - writeStart) / 1000;
    context.progress(
      `image written: ${formatBytes(written.writtenBytes)} of data in ${formatDuration(writeSeconds)}`,
    );

    const samples = new Map<string, BackupSample[]>();
    const record = (name: string, sample: BackupSample): void => {
      samples.set(name, [...(samples.get(name) ?? []), sample]);
      context.progress(
        `${name}: ${formatRate(mbPerSecond(settings.sizeBytes, sample.seconds))} ` +
          `(${formatDuration(sample.seconds)}, ${sample.chunksNew} new / ${sample.chunksReused} reused chunks, ` +
          `${formatNumber(sample.cpuSeconds / sample.seconds)} cores used` +
          (sample.otherCpuSeconds === undefined
            ? ''
            : `, other processes ${formatNumber(sample.otherCpuSeconds / sample.seconds)} cores`) +
          `, peak RSS ${formatBytes(sample.peakRssBytes)})`,
      );
    };
    // Rounds interleave the cases, so slow drift of the machine spreads over all of them.
    for (let round = 1; round <= settings.samples; round++) {
      let lastStore: string | undefined;
      for (const threads of settings.threads) {
        // Compressions alternate within a round, so they share the machine's state.
        const order = round % 2 === 1 ? settings.compressions : [...settings.compressions].reverse();
        for (const compress of order) {
          if (lastStore !== undefined) cleanups.push(rm(lastStore, { recursive: true, force: true }));
          const storeDir = join(scratch, `store-${round}-${threads}-${compress}`);
          const name = caseName(compress, threads, defaultThreads);
          context.progress(`round ${round}/${settings.samples}: ${name} …`);
          record(
            name,
            await runChild({ storeDir, imagePath, encodeThreads: threads, compress, label: name }),
          );
          lastStore = storeDir;
        }
      }
      if (settings.incremental) {
        // Without a full backup in this round (--threads ''), prime a store first, untimed.
        let storeDir = lastStore;
        if (storeDir === undefined) {
          storeDir = join(scratch, `store-${round}-prime`);
          context.progress(`round ${round}/${settings.samples}: priming a store for the incremental case …`);
          await runChild({ storeDir, imagePath, compress: settings.compressions[0]!, label: 'priming' });
        }
        context.progress(`round ${round}/${settings.samples}: ${INCREMENTAL_NAME} …`);
        record(
          INCREMENTAL_NAME,
          await runChild({
            storeDir,
            imagePath,
            compress: settings.compressions[0]!,
            label: INCREMENTAL_NAME,
          }),
        );
        lastStore = storeDir;
      }
      if (lastStore !== undefined) cleanups.push(rm(lastStore, { recursive: true, force: true }));
      await Promise.all(cleanups.splice(0));
    }

    const order = [
      ...settings.compressions.flatMap((c) => settings.threads.map((t) => caseName(c, t, defaultThreads))),
      INCREMENTAL_NAME,
    ];
    const cases = order
      .filter((name) => samples.has(name))
      .map((name) => summarizeCase(name, settings.sizeBytes, samples.get(name)!));
    const speedups = speedupTable(cases, settings, defaultThreads);
    const composition = imageRegions(spec).reduce<Record<string, number>>((acc, r) => {
      acc[r.kind] = (acc[r.kind] ?? 0) + r.lengthBytes;
      return acc;
    }, {});
    const compositionText = Object.entries(composition)
      .sort((a, b) => b[1] - a[1])
      .map(([kind, bytes]) => `${kind} ${formatNumber((bytes / settings.sizeBytes) * 100)} %`)
      .join(', ');
    const first = cases[0]?.details;
    return {
      benchmark: 'backup',
      title: `Backup throughput, ${formatBytes(settings.sizeBytes)} synthetic VM system disk`,
      machine,
      settings: {
        samples: settings.samples,
        sizeBytes: settings.sizeBytes,
        seed: settings.seed,
        image: `vmImageSet(${settings.seed}, {drives: 1}) drive-scsi0, sparse file`,
        threads: settings.threads.join(','),
        defaultEncodeThreads: defaultThreads,
        incremental: settings.incremental,
        compress: settings.compressions.join(','),
        zstdEncoder: zstdCodecInfo.encoder,
        chunkBytes: CHUNK_BYTES,
        scratchDir: settings.dir,
        scratchFileSystem: await fileSystemOf(scratch),
      },
      sections: [
        {
          title: 'Backup of one drive into a datastore',
          meanLabel: 'mean / backup',
          cases,
          columns: COLUMNS,
          notes: [
            `Image: ${compositionText}; ${formatBytes(written.writtenBytes)} of data written sparse ` +
              `(zero blocks are holes), ${Math.ceil(settings.sizeBytes / CHUNK_BYTES)} chunks of 4 MiB` +
              (first === undefined ? '.' : `, ${first.zeroChunks} of them all-zero.`),
            'Throughput is image bytes (including zero regions) per second of the backup() call.',
            'Full cases back up into a fresh datastore; the incremental case backs up the same image again into ' +
              "the store of the round's last full backup, with the default encodeThreads.",
            'Each backup runs in its own Node process, so peak RSS (getrusage maxRSS, Node baseline included) and CPU ' +
              'time (user and system, all threads, mean per backup) belong to that backup. "cores used" is CPU time ' +
              'over wall time; "others\' cores" is what other processes on the machine used meanwhile (busy time from ' +
              '/proc/stat minus ours): when it is high, the backup did not have the cores it asked for.',
            'The image was just written, so it is read from the page cache; every chunk file is fsynced as the ' +
              'datastore does.',
          ],
        },
      ],
      ...(speedups.rows.length === 0 ? {} : { tables: [speedups] }),
      durationSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    await Promise.all(cleanups);
    await rm(scratch, { recursive: true, force: true });
  }
}

export const backupBenchmark: Benchmark = {
  name: 'backup',
  summary:
    'MB/s of backing up a synthetic VM disk: zstd, deflate and none; encoder inline, 1 and N threads; incremental',
  description: `
Writes a deterministic synthetic VM system disk (@liverestore/testkit vmImageSet,
default 2 GiB) as a sparse file into a scratch directory, then backs it up with
@liverestore/datastore's backup() into a fresh datastore per sample, for each
compression (zstd, the default; deflate; none; alternating within each round) with
the chunk encoder inline (encodeThreads 0), on 1 thread and on the default pool (the
machine's parallelism), and once more into an existing store where every chunk is
reused (read + hash + dedup). Prints each compression's speed-up over deflate. Each
backup runs in its own process, to measure its peak RSS. Needs about 2× the image size
of free space in --dir. Takes 8–12 minutes with the defaults on a 2-core machine.`,
  defaultSamples: 3,
  options: [
    {
      name: 'size',
      type: 'string',
      valueName: 'SIZE',
      description: 'image size (2GiB, 512M, …)',
      defaultText: '2GiB',
    },
    {
      name: 'threads',
      type: 'string',
      valueName: 'LIST',
      description: 'encodeThreads of the full-backup cases, comma-separated',
      defaultText: '0,1,<machine parallelism>',
    },
    { name: 'skip-incremental', type: 'boolean', description: 'leave out the incremental case' },
    {
      name: 'compress',
      type: 'string',
      valueName: 'LIST',
      description: 'compressions to compare, comma-separated: zstd, deflate, none',
      defaultText: 'zstd,deflate,none',
    },
    VM_SEED_OPTION,
    {
      name: 'dir',
      type: 'string',
      valueName: 'DIR',
      description: 'scratch directory for the image and stores',
      defaultText: 'the OS temp dir',
    },
  ],
  run: runBackup,
};
