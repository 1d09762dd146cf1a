/**
 * `pnpm bench qemu` (`liverestore bench qemu`): the disk of a VM live-restored the way
 * QEMU does it, by liverestore and by the alternatives a user would try, side by side in
 * one run (qemu-systems.ts), while a guest stand-in (fio over NBD, guest-workloads.ts)
 * reads the disk during the copy. Reports copy time, guest throughput and latency,
 * fetches against the distinct chunks, CPU seconds and peak RSS per process
 * (qemu-report.ts).
 */

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { backup, Datastore } from '@liverestore/datastore';
import { vmImageSet, writeImageFile } from '@liverestore/testkit';
import type { BenchContext, Benchmark } from './benchmark.js';
import { CleanupScope } from './children.js';
import { UsageError } from './errors.js';
import { startFio } from './fio.js';
import {
  GUEST_RUNTIME_LIMIT_SECONDS,
  type GuestJob,
  guestJob,
  WORKLOADS,
  type WorkloadName,
} from './guest-workloads.js';
import { distinctDataChunks, readIndexes } from './live-systems.js';
import { slowLoadPhasesOf } from './load-phases.js';
import { machineInfo } from './machine.js';
import { cacheSizeOption, iterationCount, optionText, SCRATCH_DIR_OPTION } from './options.js';
import { processUsage } from './proc-stats.js';
import { type QemuIteration, type QemuSettings, qemuResult, STORE_COMPRESSION } from './qemu-report.js';
import { type RestoreSource, type Role, SYSTEMS, type SystemName, startSystem } from './qemu-systems.js';
import type { BenchResult } from './result.js';
import { requireTools } from './tools.js';
import {
  formatBytes,
  formatNumber,
  parseBitsPerSecond,
  parseBytes,
  parseList,
  parseMilliseconds,
  parsePositiveInt,
} from './units.js';

const MiB = 1024 * 1024;
const DEFAULTS = { iterations: 5, size: '512MiB', cacheSize: '256MiB' } as const;
const QUICK = { iterations: 1, size: '64MiB' } as const;

/** `--rtt-ms 1` means 1 ms; a value with its own unit (`500us`) is taken as it is. */
function rttText(text: string): string {
  return /^\d+(\.\d+)?$/.test(text) ? `${text}ms` : text;
}

function readSettings(context: BenchContext): QemuSettings {
  const str = optionText(context);
  const quick = context.options.quick === true;
  const iterations = iterationCount(context, QUICK.iterations);
  const sizeBytes = parseBytes(str('size') ?? (quick ? QUICK.size : DEFAULTS.size), '--size');
  if (sizeBytes < 16 * MiB || sizeBytes % (64 * 1024) !== 0)
    throw new UsageError('--size must be at least 16MiB and a multiple of 64KiB');
  const cacheBytes = cacheSizeOption(context, DEFAULTS.cacheSize);
  const pick = <T extends string>(option: string, all: readonly T[]): T[] => {
    const text = str(option);
    if (text === undefined) return [...all];
    const picked = parseList(text);
    for (const name of picked)
      if (!all.includes(name as T))
        throw new UsageError(`--${option}: unknown "${name}" (one of: ${all.join(', ')})`);
    if (picked.length === 0) throw new UsageError(`--${option} must name at least one`);
    return all.filter((name) => picked.includes(name));
  };
  return {
    iterations,
    sizeBytes,
    cacheBytes,
    systems: pick('systems', SYSTEMS),
    workloads: pick('workload', WORKLOADS),
    rttMs: parseMilliseconds(rttText(str('rtt-ms') ?? '0'), '--rtt-ms'),
    bitsPerSecond: parseBitsPerSecond(str('bandwidth') ?? 'unlimited', '--bandwidth'),
    decodeAsArriving: context.options['decode-as-arriving'] === true,
    seed: str('seed') === undefined ? 1 : parsePositiveInt(str('seed')!, '--seed'),
    quick,
    dir: str('dir') ?? tmpdir(),
  };
}

/** Every program the chosen systems need, with the Debian package of each. */
function neededTools(systems: readonly SystemName[]) {
  const qsd = systems.some((s) => s !== 'lr-live');
  const nbdkit = systems.some((s) => s.startsWith('nbdkit'));
  return [
    { program: 'fio', debianPackage: 'fio' },
    ...(qsd
      ? [
          { program: 'qemu-img', debianPackage: 'qemu-utils' },
          { program: 'qemu-storage-daemon', debianPackage: 'qemu-system-common' },
        ]
      : []),
    ...(nbdkit ? [{ program: 'nbdkit', debianPackage: 'nbdkit' }] : []),
    ...(systems.includes('nbdkit-curl') ? [{ program: 'lighttpd', debianPackage: 'lighttpd' }] : []),
  ];
}

/** Writes the testkit VM's system disk as a raw image and backs it up as vm/100. */
async function prepareSource(
  context: BenchContext,
  s: QemuSettings,
  scratch: string,
): Promise<{ source: RestoreSource; distinctChunks: number; storedBytes: number }> {
  const imageDir = join(scratch, 'www');
  await mkdir(imageDir);
  const [drive] = vmImageSet(s.seed, { drives: 1, sizeBytes: s.sizeBytes });
  const imageName = `${drive!.name}.raw`;
  const imagePath = join(imageDir, imageName);
  context.progress(`writing the ${formatBytes(s.sizeBytes)} synthetic system disk and backing it up …`);
  await writeImageFile(drive!.spec, imagePath);
  const storeDir = join(scratch, 'store');
  const store = await Datastore.create(storeDir);
  const result = await backup(store, {
    type: 'vm',
    id: '100',
    inputs: [{ name: drive!.name, path: imagePath }],
    compress: STORE_COMPRESSION,
  });
  const [archive] = await readIndexes(storeDir, result.snapshot, [drive!.name]);
  return {
    source: {
      storeDir,
      snapshot: 'vm/100',
      archive: archive!.name,
      imageDir,
      imageName,
      cacheBytes: s.cacheBytes,
      rttMs: s.rttMs,
      bitsPerSecond: s.bitsPerSecond,
      decodeAsArriving: s.decodeAsArriving,
    },
    distinctChunks: distinctDataChunks([archive!]),
    storedBytes: result.bytesWritten,
  };
}

/** CPU seconds of each role's process now (NaN for one that is gone). */
async function cpuNow(pids: Partial<Record<Role, number>>): Promise<Partial<Record<Role, number>>> {
  const out: Partial<Record<Role, number>> = {};
  for (const [role, pid] of Object.entries(pids) as [Role, number][])
    out[role] = (await processUsage(pid)).cpuSeconds;
  return out;
}

/** One system, one workload: start everything, copy while the guest reads, measure, stop. */
async function runIteration(
  source: RestoreSource,
  scratch: string,
  system: SystemName,
  job: GuestJob,
  iteration: number,
  distinctChunks: number,
): Promise<QemuIteration> {
  const scope = new CleanupScope();
  const dir = await mkdtemp(join(scratch, `${system}-`));
  scope.defer(() => rm(dir, { recursive: true, force: true }));
  try {
    const started = await startSystem(system, scope, source, dir);
    const cpuStart = await cpuNow(started.pids);
    const t0 = performance.now();
    let copyEnd = Number.NaN;
    let guestEnd = Number.NaN;
    const copy = started.copy().then((seconds) => {
      copyEnd = performance.now();
      return seconds;
    });
    const fio = startFio(job.workload, started.guestUri, job.fioOptions);
    scope.add(fio.process);
    const guest = fio.done.then((reads) => {
      guestEnd = performance.now();
      return reads;
    });
    const [copySeconds, reads] = await Promise.all([copy, guest]);
    if (reads.bytes < job.plannedBytes)
      throw new Error(
        `${system}: fio read ${reads.bytes} of ${job.plannedBytes} bytes before its ${GUEST_RUNTIME_LIMIT_SECONDS} s limit`,
      );
    const cpuSeconds: Partial<Record<Role | 'fio', number>> = { fio: reads.cpuSeconds };
    const peakRssBytes: Partial<Record<Role, number>> = {};
    for (const [role, pid] of Object.entries(started.pids) as [Role, number][]) {
      const usage = await processUsage(pid);
      cpuSeconds[role] = usage.cpuSeconds - (cpuStart[role] ?? Number.NaN);
      peakRssBytes[role] = usage.peakRssBytes;
    }
    const fetched = await started.fetches();
    // Loads are traced as they end: every load the guest and the copy waited for is there.
    const slowLoads = started.loadTrace === undefined ? undefined : await slowLoadPhasesOf(started.loadTrace);
    return {
      iteration,
      workload: job.workload,
      system,
      copySeconds,
      guestSeconds: (guestEnd - t0) / 1000,
      guestEndedFirst: guestEnd < copyEnd,
      guestBytes: reads.bytes,
      guestMiBps: reads.bytesPerSecond / MiB,
      p50Ms: reads.p50Ns / 1e6,
      p99Ms: reads.p99Ns / 1e6,
      p999Ms: reads.p999Ns / 1e6,
      fetches: fetched?.requests ?? null,
      fetchedBytes: fetched?.bytes ?? null,
      distinctChunks,
      cpuSeconds,
      peakRssBytes,
      ...(slowLoads === undefined ? {} : { slowLoads }),
    };
  } finally {
    await scope.close();
  }
}

async function runQemu(context: BenchContext): Promise<BenchResult> {
  const startedAt = performance.now();
  const s = readSettings(context);
  await requireTools('bench qemu', neededTools(s.systems));
  const machine = machineInfo();
  const scope = new CleanupScope();
  const scratch = await mkdtemp(join(s.dir, 'liverestore-bench-qemu-'));
  scope.defer(() => rm(scratch, { recursive: true, force: true }));
  try {
    const { source, distinctChunks, storedBytes } = await prepareSource(context, s, scratch);
    const jobs = new Map<WorkloadName, GuestJob>();
    for (const w of s.workloads)
      jobs.set(w, await guestJob(w, s.sizeBytes, s.seed, join(scratch, `${w}.iolog`)));
    const runs: QemuIteration[] = [];
    for (let it = 1; it <= s.iterations; it++) {
      for (const workload of s.workloads) {
        // Systems alternate, and the first one rotates, so no system always runs first.
        const order = s.systems.map((_, i) => s.systems[(i + it - 1) % s.systems.length]!);
        for (const system of order) {
          context.progress(`iteration ${it}/${s.iterations}, ${workload}: ${system} …`);
          const r = await runIteration(source, scratch, system, jobs.get(workload)!, it, distinctChunks);
          runs.push(r);
          context.progress(
            `  copy ${formatNumber(r.copySeconds)} s, guest ${formatNumber(r.guestMiBps)} MiB/s, p50 ${formatNumber(r.p50Ms)} ms, p99 ${formatNumber(r.p99Ms)} ms${r.fetches === null ? '' : `, ${r.fetches} fetches (${distinctChunks} distinct chunks)`}`,
          );
        }
      }
    }
    return qemuResult({
      settings: s,
      machine,
      runs,
      jobs: [...jobs.values()],
      distinctChunks,
      storedBytes,
      durationSeconds: (performance.now() - startedAt) / 1000,
    });
  } finally {
    await scope.close();
  }
}

export const qemuBenchmark: Benchmark = {
  name: 'qemu',
  summary:
    'QEMU live restore: liverestore nbd / live-restore vs nbdkit curl and file, guest fio during the copy',
  description: `
Backs up the system disk of testkit's synthetic VM (--size) into a scratch datastore and
keeps its raw image, then live-restores it, per iteration and workload, with each
system (fresh processes every time, systems alternating):
  lr-nbd       liverestore serve, liverestore nbd --from URL, a qcow2 overlay on its
               export and qemu-storage-daemon streaming it (QMP block-stream)
  lr-live      liverestore serve, liverestore live-restore --from URL (its own copy)
  nbdkit-curl  lighttpd serving the raw image, nbdkit curl + cache filter (same size as
               --cache-size), overlay + qemu-storage-daemon block-stream
  nbdkit-file  nbdkit file on the raw image (the local-disk limit), overlay + stream
While the copy runs, fio (--ioengine=nbd) reads the disk the guest would use: the
daemon's export of the overlay, or live-restore's export. Workloads: rand64k (random
64 KiB reads, queue depth 16, 96 MiB per 512 MiB of disk), rand4k (random 4 KiB reads,
queue depth 1), boot (a seeded boot-like trace replayed from an fio iolog).

Reports copy time, guest MiB/s and p50/p99/p99.9 latency, fetches (serve's chunk
fetches, lighttpd's requests) against the distinct non-zero chunks, CPU seconds and
peak RSS per process; --rtt-ms and --bandwidth put a proxy with that round trip and
that cap per direction in front of both HTTP servers. Needs fio, nbdkit, lighttpd,
qemu-img and qemu-storage-daemon. The defaults take a few minutes on a 2-core machine;
--quick (one iteration, 64 MiB) well under one.`,
  defaultSamples: DEFAULTS.iterations,
  options: [
    {
      name: 'iterations',
      type: 'string',
      valueName: 'N',
      description: 'iterations (each runs every system once per workload; same as --samples)',
      defaultText: String(DEFAULTS.iterations),
    },
    { name: 'size', type: 'string', valueName: 'SIZE', description: 'disk size', defaultText: DEFAULTS.size },
    {
      name: 'cache-size',
      type: 'string',
      valueName: 'SIZE',
      description: "liverestore's chunk cache and nbdkit's cache filter",
      defaultText: DEFAULTS.cacheSize,
    },
    {
      name: 'systems',
      type: 'string',
      valueName: 'LIST',
      description: `systems to run (${SYSTEMS.join(', ')})`,
      defaultText: 'all',
    },
    {
      name: 'workload',
      type: 'string',
      valueName: 'LIST',
      description: `guest workloads (${WORKLOADS.join(', ')})`,
      defaultText: 'all',
    },
    {
      name: 'rtt-ms',
      type: 'string',
      valueName: 'MS',
      description: 'round trip added in front of serve and lighttpd (0 = no proxy)',
      defaultText: '0',
    },
    {
      name: 'bandwidth',
      type: 'string',
      valueName: 'RATE',
      description: 'bandwidth cap per direction in front of serve and lighttpd (1Gbit, 100Mbit, unlimited)',
      defaultText: 'unlimited',
    },
    {
      name: 'decode-as-arriving',
      type: 'boolean',
      description:
        "liverestore's systems decode a guest's miss as its blob arrives (their --decode-as-arriving)",
    },
    {
      name: 'seed',
      type: 'string',
      valueName: 'N',
      description: 'image and workload seed',
      defaultText: '1',
    },
    {
      name: 'quick',
      type: 'boolean',
      description: `one iteration of a ${QUICK.size} disk (explicit options win)`,
    },
    SCRATCH_DIR_OPTION,
  ],
  run: runQemu,
};
