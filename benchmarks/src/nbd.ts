/**
 * `pnpm bench nbd`: warm random 4 KiB reads through `liverestore nbd` measured with
 * `fio --ioengine=nbd`, next to `nbdkit file` serving the raw image on the same machine
 * in the same run (the issue's goal: at least 60% of nbdkit's IOPS once cached).
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { backup, Datastore } from '@liverestore/datastore';
import { freePort, vmImageSet, writeImageFile } from '@liverestore/testkit';
import type { BenchContext, Benchmark } from './benchmark.js';
import { CleanupScope } from './children.js';
import { UsageError } from './errors.js';
import { type FioReads, runFio } from './fio.js';
import { asStoppable, startLiverestoreProcess } from './liverestore-process.js';
import { machineInfo } from './machine.js';
import { startNbdkit } from './nbdkit.js';
import { optionText, SCRATCH_DIR_OPTION, VM_SEED_OPTION } from './options.js';
import { type BenchResult, type CaseResult, type DetailColumn, measuredCase } from './result.js';
import { requireTools } from './tools.js';
import { formatBytes, formatNumber, parseBytes, parsePositiveInt } from './units.js';

const READ_BYTES = 4096;

interface Settings {
  readonly samples: number;
  readonly sizeBytes: number;
  readonly workingSetBytes: number;
  readonly cacheBytes: number;
  readonly runtimeSeconds: number;
  readonly depths: readonly number[];
  readonly seed: number;
  readonly dir: string;
}

function readSettings(context: BenchContext): Settings {
  const str = optionText(context);
  const sizeBytes = str('size') === undefined ? 1024 ** 3 : parseBytes(str('size')!, '--size');
  const workingSetBytes =
    str('working-set') === undefined ? 256 * 1024 ** 2 : parseBytes(str('working-set')!, '--working-set');
  const cacheBytes =
    str('cache-size') === undefined ? 1024 ** 3 : parseBytes(str('cache-size')!, '--cache-size');
  if (sizeBytes < 64 * 1024 ** 2) throw new UsageError('--size must be at least 64MiB');
  if (workingSetBytes > sizeBytes) throw new UsageError('--working-set must not exceed --size');
  if (cacheBytes < workingSetBytes) throw new UsageError('--cache-size must be at least --working-set');
  const depths =
    str('depths') === undefined
      ? [16, 1]
      : str('depths')!
          .split(',')
          .map((d) => parsePositiveInt(d.trim(), '--depths'));
  return {
    samples: context.samples,
    sizeBytes,
    workingSetBytes,
    cacheBytes,
    runtimeSeconds: str('runtime') === undefined ? 10 : parsePositiveInt(str('runtime')!, '--runtime'),
    depths,
    seed: str('seed') === undefined ? 1 : parsePositiveInt(str('seed')!, '--seed'),
    dir: str('dir') ?? tmpdir(),
  };
}

interface Server {
  readonly name: string;
  readonly uri: string;
}

/** `liverestore nbd` on an ephemeral loopback port. */
async function startLiverestore(scope: CleanupScope, storeDir: string, cacheBytes: number): Promise<Server> {
  const lr = await startLiverestoreProcess([
    'nbd',
    '--from',
    storeDir,
    'vm/100',
    '--listen',
    '127.0.0.1:0',
    '--cache-size',
    `${Math.floor(cacheBytes / 1024 ** 2)}MiB`,
  ]);
  scope.add(asStoppable(lr));
  return { name: 'liverestore nbd', uri: `nbd://${lr.address}/drive-scsi0.img` };
}

/** `nbdkit file` serving the raw image read-only, on a port picked here. */
async function startNbdkitFile(scope: CleanupScope, imagePath: string, scratch: string): Promise<Server> {
  const kit = await startNbdkit(scope, {
    plugin: 'file',
    params: [imagePath],
    listen: { port: await freePort() },
    pidFile: join(scratch, 'nbdkit.pid'),
  });
  return { name: 'nbdkit file', uri: kit.uri };
}

function warmUp(uri: string, workingSetBytes: number): Promise<FioReads> {
  return runFio('warm', uri, ['--rw=read', '--bs=1m', '--iodepth=4', `--size=${workingSetBytes}`]);
}

function randRead(uri: string, s: Settings, depth: number): Promise<FioReads> {
  return runFio('rand', uri, [
    '--rw=randread',
    `--bs=${READ_BYTES}`,
    `--iodepth=${depth}`,
    `--size=${s.workingSetBytes}`,
    `--randseed=${s.seed}`,
    '--time_based',
    `--runtime=${s.runtimeSeconds}`,
  ]);
}

const COLUMNS: readonly DetailColumn[] = [
  { key: 'iops', label: 'IOPS', format: 'integer' },
  { key: 'p50', label: 'clat p50', format: 'text' },
  { key: 'p99', label: 'clat p99', format: 'text' },
  { key: 'vsNbdkit', label: 'IOPS vs nbdkit', format: 'text' },
];

function micros(ns: number): string {
  return `${formatNumber(ns / 1000)} µs`;
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

async function runNbd(context: BenchContext): Promise<BenchResult> {
  const started = performance.now();
  const s = readSettings(context);
  await requireTools('bench nbd', [
    { program: 'fio', debianPackage: 'fio' },
    { program: 'nbdkit', debianPackage: 'nbdkit' },
  ]);
  const scope = new CleanupScope();
  const scratch = await mkdtemp(join(s.dir, 'liverestore-bench-'));
  scope.defer(() => rm(scratch, { recursive: true, force: true }));
  try {
    const [drive] = vmImageSet(s.seed, { drives: 1, sizeBytes: s.sizeBytes });
    const imagePath = join(scratch, 'drive-scsi0.raw');
    context.progress(`writing a ${formatBytes(s.sizeBytes)} synthetic image`);
    await writeImageFile(drive!.spec, imagePath);
    const storeDir = join(scratch, 'store');
    const store = await Datastore.create(storeDir);
    context.progress('backing it up (deflate, 4 MiB chunks) …');
    await backup(store, { type: 'vm', id: '100', inputs: [{ name: 'drive-scsi0', path: imagePath }] });

    context.progress('starting liverestore nbd and nbdkit file …');
    const lr = await startLiverestore(scope, storeDir, s.cacheBytes);
    const kit = await startNbdkitFile(scope, imagePath, scratch);

    for (const server of [lr, kit]) {
      context.progress(`warming ${server.name}: sequential read of ${formatBytes(s.workingSetBytes)} …`);
      const t = performance.now();
      const warm = await warmUp(server.uri, s.workingSetBytes);
      if (warm.bytes < s.workingSetBytes)
        throw new Error(`${server.name}: warm-up read only ${warm.bytes} bytes`);
      context.progress(`  ${formatNumber((performance.now() - t) / 1000)} s`);
    }

    // results[depth][server] = per-sample fio results
    const results = new Map<number, Map<string, FioReads[]>>();
    for (const depth of s.depths)
      results.set(
        depth,
        new Map([
          [lr.name, []],
          [kit.name, []],
        ]),
      );
    for (let round = 1; round <= s.samples; round++) {
      for (const depth of s.depths) {
        for (const server of [lr, kit]) {
          context.progress(
            `round ${round}/${s.samples}: ${server.name}, QD${depth}, ${s.runtimeSeconds} s of random 4 KiB reads …`,
          );
          const r = await randRead(server.uri, s, depth);
          if (r.bytes === 0) throw new Error(`${server.name}: fio read no data`);
          context.progress(`  ${Math.round(r.iops)} IOPS, p50 ${micros(r.p50Ns)}, p99 ${micros(r.p99Ns)}`);
          results.get(depth)!.get(server.name)!.push(r);
        }
      }
    }

    const cases: CaseResult[] = [];
    const ratios: string[] = [];
    for (const depth of s.depths) {
      const byServer = results.get(depth)!;
      const kitIops = mean(byServer.get(kit.name)!.map((r) => r.iops));
      for (const server of [lr, kit]) {
        const rs = byServer.get(server.name)!;
        const iops = mean(rs.map((r) => r.iops));
        cases.push(
          measuredCase(
            `${server.name}, random 4 KiB reads, queue depth ${depth}`,
            READ_BYTES,
            rs.map((r) => 1 / r.iops),
            {
              iops: Math.round(iops),
              p50: micros(median(rs.map((r) => r.p50Ns))),
              p99: micros(median(rs.map((r) => r.p99Ns))),
              vsNbdkit: server === kit ? '' : `${formatNumber((100 * iops) / kitIops)} %`,
            },
          ),
        );
      }
      const lrIops = mean(byServer.get(lr.name)!.map((r) => r.iops));
      ratios.push(
        `queue depth ${depth}: liverestore ${Math.round(lrIops)} IOPS / nbdkit ${Math.round(kitIops)} IOPS = ${formatNumber((100 * lrIops) / kitIops)} %${depth === 16 ? ` (goal ≥ 60 %: ${lrIops >= 0.6 * kitIops ? 'met' : 'missed'})` : ''}.`,
      );
    }

    return {
      benchmark: 'nbd',
      title: `NBD: warm random 4 KiB reads with fio, liverestore nbd vs nbdkit file (${formatBytes(s.workingSetBytes)} working set)`,
      machine: machineInfo(),
      settings: {
        samples: s.samples,
        sizeBytes: s.sizeBytes,
        workingSetBytes: s.workingSetBytes,
        cacheBytes: s.cacheBytes,
        runtimeSeconds: s.runtimeSeconds,
        depths: s.depths.join(','),
        seed: s.seed,
        chunkBytes: 4 * 1024 * 1024,
        compress: 'deflate',
        client: 'fio --ioengine=nbd (libnbd), one job, one connection',
      },
      sections: [
        {
          title: `Warm random ${READ_BYTES}-byte reads over NBD, ${formatBytes(s.workingSetBytes)} working set`,
          meanLabel: 'mean / read',
          cases,
          columns: COLUMNS,
          notes: [
            ...ratios,
            `Each sample is one fio run of ${s.runtimeSeconds} s (--rw=randread --bs=4k --size=${formatBytes(s.workingSetBytes)}, time-based, one connection); "mean / read" is 1 / IOPS of each sample, IOPS is their mean, clat p50/p99 the median over samples of fio's completion-latency percentiles.`,
            `liverestore nbd serves the backup from a local datastore in its own process (cache ${formatBytes(s.cacheBytes)}, default workers and readahead); nbdkit serves the raw image file (page cache) with its file plugin, read-only. Both were warmed with one sequential fio read of the working set; servers and fio share the machine's cores.`,
            'Samples alternate liverestore, nbdkit per queue depth and round, so a slow moment of the shared machine hits both.',
          ],
        },
      ],
      durationSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    await scope.close();
  }
}

export const nbdBenchmark: Benchmark = {
  name: 'nbd',
  summary: 'warm random 4 KiB reads over NBD with fio: liverestore nbd vs nbdkit file',
  description: `
Writes a deterministic synthetic VM disk (@liverestore/testkit, default 1 GiB), backs
it up (DEFLATE, 4 MiB chunks) into a scratch datastore, starts \`liverestore nbd\` on it
in a child process and \`nbdkit file\` on the raw image, warms both with a sequential
read of the working set, then measures random 4 KiB reads over the working set with
\`fio --ioengine=nbd\` at queue depth 16 and 1, alternating the two servers each round.
Needs fio (with the nbd engine) and nbdkit. Takes about 2 minutes with the defaults.`,
  defaultSamples: 3,
  options: [
    { name: 'size', type: 'string', valueName: 'SIZE', description: 'image size', defaultText: '1GiB' },
    {
      name: 'working-set',
      type: 'string',
      valueName: 'SIZE',
      description: 'region of the image read at random',
      defaultText: '256MiB',
    },
    {
      name: 'cache-size',
      type: 'string',
      valueName: 'SIZE',
      description: 'liverestore chunk cache (≥ working set)',
      defaultText: '1GiB',
    },
    {
      name: 'runtime',
      type: 'string',
      valueName: 'SECONDS',
      description: 'fio runtime per sample',
      defaultText: '10',
    },
    {
      name: 'depths',
      type: 'string',
      valueName: 'LIST',
      description: 'queue depths, comma-separated',
      defaultText: '16,1',
    },
    VM_SEED_OPTION,
    SCRATCH_DIR_OPTION,
  ],
  run: runNbd,
};
