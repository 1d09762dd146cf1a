/**
 * `pnpm bench s3`: a cold full restore of a synthetic VM disk from an S3 datastore in a
 * real Ceph RGW on loopback, next to the same restore from a local datastore, in the
 * same rounds (alternating), with the same cache and decode workers, and the S3 restore
 * again through a warm persistent chunk cache (`--chunk-cache`: every blob already in a
 * local directory, filled by one restore before the rounds). The goals: the S3 restore at
 * ≥ 80 % of the local rate, through a warm chunk cache at ≥ 100 %.
 */

import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import {
  backup,
  Datastore,
  resolveS3Settings,
  S3Client,
  type S3ConnectionOptions,
  S3Datastore,
} from '@liverestore/datastore';
import { zstdCodecInfo } from '@liverestore/format';
import {
  ChunkCache,
  type ChunkSource,
  openSnapshot,
  PersistentCacheSource,
  PersistentChunkCache,
  restoreArchive,
  S3ChunkSource,
} from '@liverestore/reader';
import { vmImageSet, writeImageFile } from '@liverestore/testkit';
import type { BenchContext, Benchmark } from './benchmark.js';
import { ToolMissingError, UsageError } from './errors.js';
import { machineInfo } from './machine.js';
import {
  CACHE_SIZE_OPTION,
  DECODE_WORKERS_OPTION,
  optionText,
  SCRATCH_DIR_OPTION,
  VM_SEED_OPTION,
} from './options.js';
import { processCpuSeconds } from './proc-stats.js';
import { type BenchResult, type DetailColumn, measuredCase } from './result.js';
import { formatBytes, parseBytes, parseList, parsePositiveInt } from './units.js';

const SCRIPTS = fileURLToPath(new URL('../../../scripts/', import.meta.url));
/** Ports of an RGW this benchmark starts itself (apart from the tests' 7488 and a user's 7480). */
const BENCH_RGW_PORT = 7489;
const BENCH_RGW_MON_PORT = 3309;

interface Settings {
  readonly samples: number;
  readonly sizeBytes: number;
  readonly workers: number;
  readonly cacheBytes: number;
  readonly seed: number;
  readonly dir: string;
  /** Given with --endpoint (keys from AWS_*), or undefined: start an RGW. */
  readonly endpoint: string | undefined;
  /** One S3 case per value: the source's background fetches in flight (lanes). */
  readonly lanes: readonly number[];
}

function readSettings(context: BenchContext): Settings {
  const str = optionText(context);
  const sizeBytes = str('size') === undefined ? 1024 ** 3 : parseBytes(str('size')!, '--size');
  if (sizeBytes < 16 * 1024 ** 2) throw new UsageError('--size must be at least 16MiB');
  return {
    samples: context.samples,
    sizeBytes,
    workers:
      str('workers') === undefined ? availableParallelism() : parsePositiveInt(str('workers')!, '--workers'),
    cacheBytes:
      str('cache-size') === undefined ? 256 * 1024 ** 2 : parseBytes(str('cache-size')!, '--cache-size'),
    seed: str('seed') === undefined ? 1 : parsePositiveInt(str('seed')!, '--seed'),
    dir: str('dir') ?? tmpdir(),
    endpoint: str('endpoint'),
    lanes: [
      ...new Set(
        (str('lanes') === undefined ? ['4'] : parseList(str('lanes')!)).map((n) =>
          parsePositiveInt(n, '--lanes'),
        ),
      ),
    ],
  };
}

/** Starts an RGW in `dir` with scripts/rgw-up.sh (port 7489); returns its connection and how to stop it (bench scale uses it too). */
export function startRgw(dir: string): {
  connection: S3ConnectionOptions;
  cpuSeconds(): Promise<number>;
  stop(): void;
} {
  const result = spawnSync(join(SCRIPTS, 'rgw-up.sh'), [dir], {
    env: { ...process.env, RGW_PORT: String(BENCH_RGW_PORT), RGW_MON_PORT: String(BENCH_RGW_MON_PORT) },
    encoding: 'utf8',
  });
  if (result.error !== undefined || result.status === 2)
    throw new ToolMissingError('bench s3 starts a Ceph RGW: apt-get install -y radosgw ceph-mon ceph-osd', [
      'radosgw',
      'ceph-mon',
      'ceph-osd',
    ]);
  if (result.status !== 0) throw new Error(`scripts/rgw-up.sh failed: ${result.stderr}`);
  return {
    connection: {
      endpoint: `http://127.0.0.1:${BENCH_RGW_PORT}`,
      accessKeyId: 'TESTAK',
      secretAccessKey: 'TESTSK',
    },
    // CPU of the Ceph daemons (mon, OSD, radosgw), from their pid files.
    cpuSeconds: async () => {
      let total = 0;
      for (const name of await readdir(join(dir, 'run'))) {
        if (!name.endsWith('.pid')) continue;
        total += (await processCpuSeconds(Number(await readFile(join(dir, 'run', name), 'utf8')))) ?? 0;
      }
      return total;
    },
    stop: () => spawnSync(join(SCRIPTS, 'rgw-down.sh'), [dir]),
  };
}

/** One cold restore of drive-scsi0 through a fresh cache; seconds. */
async function coldRestore(
  source: string | ChunkSource,
  snapshot: string,
  s: Settings,
  out: string,
): Promise<number> {
  const cache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
  try {
    const snap = await openSnapshot({ source, snapshot, cache });
    const reader = await snap.openArchive('drive-scsi0');
    const t = performance.now();
    await restoreArchive(reader, out, { concurrency: 2 * s.workers + 2 });
    const seconds = (performance.now() - t) / 1000;
    await snap.close();
    await rm(out);
    return seconds;
  } finally {
    await cache.close();
  }
}

/** What a case restores from: the local store, the S3 store with n lanes, or the S3 store behind a warm chunk cache. */
type System =
  | { readonly kind: 'local' }
  | { readonly kind: 's3'; readonly lanes: number }
  | { readonly kind: 'warm' };

function caseName(system: System, url: string): string {
  switch (system.kind) {
    case 'local':
      return `local datastore (blobs in the page cache)`;
    case 's3':
      return `S3 datastore in RGW (${url}), ${system.lanes} background lanes`;
    default:
      return `S3 datastore in RGW (${url}) behind a warm chunk cache (--chunk-cache)`;
  }
}

/** The S3 client's counters of a case's source, if it has one. */
function s3Stats(source: ChunkSource | string): { attempts: number; retries: number } | undefined {
  const origin = source instanceof PersistentCacheSource ? source.origin : source;
  return origin instanceof S3ChunkSource ? origin.store.client.stats : undefined;
}

async function closeSource(source: ChunkSource | string): Promise<void> {
  if (typeof source !== 'string') await source.close?.();
}

const COLUMNS: readonly DetailColumn[] = [
  { key: 'vsLocal', label: 'speed vs local restore', format: 'text' },
  { key: 'clientCpu', label: 'restore CPU s / run', format: 'text' },
  { key: 'rgwCpu', label: 'Ceph daemons CPU s / run', format: 'text' },
];

async function runS3(context: BenchContext): Promise<BenchResult> {
  const started = performance.now();
  const s = readSettings(context);
  const scratch = await mkdtemp(join(s.dir, 'liverestore-bench-s3-'));
  let rgw: ReturnType<typeof startRgw> | undefined;
  try {
    let connection: S3ConnectionOptions;
    if (s.endpoint === undefined) {
      context.progress('starting a Ceph RGW on loopback (scripts/rgw-up.sh) …');
      rgw = startRgw(join(scratch, 'rgw'));
      connection = rgw.connection;
    } else connection = { endpoint: s.endpoint };
    const bucket = `lr-bench-${Math.random().toString(16).slice(2, 10)}`;
    const client = new S3Client(bucket, resolveS3Settings(connection));
    await client.createBucket();
    const url = `s3://${bucket}/store`;
    try {
      const [drive] = vmImageSet(s.seed, { drives: 1, sizeBytes: s.sizeBytes });
      const imagePath = join(scratch, 'drive-scsi0.raw');
      context.progress(`writing a ${formatBytes(s.sizeBytes)} synthetic image`);
      await writeImageFile(drive!.spec, imagePath);
      const inputs = [{ name: 'drive-scsi0', path: imagePath }];
      context.progress('backing it up into a local datastore and into RGW (zstd, 4 MiB chunks) …');
      const localDir = join(scratch, 'store');
      const local = await backup(await Datastore.create(localDir), { type: 'vm', id: '100', inputs });
      const s3Store = await S3Datastore.open(url, { ...connection, create: true });
      const remote = await backup(s3Store, { type: 'vm', id: '100', inputs });
      await s3Store.close();
      await rm(imagePath);

      // What each case restores from, made afresh for every restore (a fresh S3 client too).
      const chunkCache = await PersistentChunkCache.open({ dir: join(scratch, 'chunk-cache') });
      const openCase = async (system: System): Promise<ChunkSource | string> => {
        if (system.kind === 'local') return localDir;
        const lanes = system.kind === 's3' ? system.lanes : s.lanes[0]!;
        const origin = await S3ChunkSource.open(url, { ...connection, backgroundFetches: lanes });
        return system.kind === 's3' ? origin : new PersistentCacheSource(origin, chunkCache);
      };
      const snapshotOf = (system: System) => (system.kind === 'local' ? local.snapshot : remote.snapshot);
      const out = join(scratch, 'restored.raw');
      const warmCase: System = { kind: 'warm' };
      context.progress(`filling the chunk cache with one restore from ${url} …`);
      const filling = await openCase(warmCase);
      await coldRestore(filling, remote.snapshot, s, out);
      await closeSource(filling);
      await chunkCache.idle();

      const systems: System[] = [
        { kind: 'local' },
        ...s.lanes.map((lanes): System => ({ kind: 's3', lanes })),
        warmCase,
      ];
      const samples = new Map(systems.map((system) => [system, [] as number[]]));
      const cpu = new Map(systems.map((system) => [system, { client: 0, rgw: 0 }]));
      let requests = 0;
      let retries = 0;
      const before = chunkCache.stats();
      for (let round = 1; round <= s.samples; round++) {
        const order = round % 2 === 1 ? systems : [...systems].reverse();
        for (const system of order) {
          context.progress(`round ${round}/${s.samples}: cold restore from ${caseName(system, url)} …`);
          const clientBefore = (await processCpuSeconds('self')) ?? Number.NaN;
          const rgwBefore = (await rgw?.cpuSeconds()) ?? Number.NaN;
          const source = await openCase(system);
          samples.get(system)!.push(await coldRestore(source, snapshotOf(system), s, out));
          const attempts = system.kind === 'warm' ? undefined : s3Stats(source);
          if (attempts !== undefined) {
            requests += attempts.attempts;
            retries += attempts.retries;
          }
          await closeSource(source);
          const used = cpu.get(system)!;
          used.client += ((await processCpuSeconds('self')) ?? Number.NaN) - clientBefore;
          used.rgw += ((await rgw?.cpuSeconds()) ?? Number.NaN) - rgwBefore;
        }
      }
      const after = chunkCache.stats();
      const warmHits = after.hits - before.hits;
      const warmMisses = after.misses - before.misses;
      await chunkCache.close();
      const cpuDetails = (system: System) => ({
        clientCpu: (cpu.get(system)!.client / s.samples).toFixed(2),
        rgwCpu: Number.isNaN(cpu.get(system)!.rgw) ? 'n/a' : (cpu.get(system)!.rgw / s.samples).toFixed(2),
      });
      const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const localMean = mean(samples.get(systems[0]!)!);
      return {
        benchmark: 's3',
        title: `Cold restore of a ${formatBytes(s.sizeBytes)} synthetic VM disk: S3 (Ceph RGW, loopback) vs local datastore`,
        machine: machineInfo(),
        settings: {
          lanes: s.lanes.join(','),
          samples: s.samples,
          sizeBytes: s.sizeBytes,
          workers: s.workers,
          cacheBytes: s.cacheBytes,
          seed: s.seed,
          chunkBytes: 4 * 1024 * 1024,
          compress: 'zstd',
          zstdDecoder: zstdCodecInfo.decoder,
          s3:
            s.endpoint === undefined ? 'Ceph RGW 16 (memstore OSD) started by scripts/rgw-up.sh' : s.endpoint,
        },
        sections: [
          {
            title: 'Cold full restore (restoreArchive, fresh cache each run)',
            meanLabel: 'mean / run',
            cases: systems.map((system) =>
              measuredCase(caseName(system, url), s.sizeBytes, samples.get(system)!, {
                vsLocal: system.kind === 'local' ? '' : (localMean / mean(samples.get(system)!)).toFixed(2),
                ...cpuDetails(system),
              }),
            ),
            columns: COLUMNS,
            notes: [
              'Both stores hold the same backup of the same image; the rounds alternate between them.',
              `S3: ${requests} requests over all rounds, ${retries} retried; one GET per chunk object, the RGW process on the same two cores as the restore.`,
              `Warm chunk cache: the S3 store behind a persistent chunk cache (PersistentCacheSource, as --chunk-cache DIR) that one untimed restore filled first; its restores took ${warmHits} blobs from the cache directory and ${warmMisses} from RGW (the snapshot's index and manifest always come from RGW).`,
              '"speed vs local restore" is the local restore time divided by the other one (goals: S3 ≥ 0.8, warm chunk cache ≥ 1.0).',
              'CPU seconds per run: of this process (restore, decode workers, S3 client) and of the Ceph daemons (mon, OSD, radosgw; /proc/PID/stat, only when the benchmark started RGW itself).',
            ],
          },
        ],
        durationSeconds: (performance.now() - started) / 1000,
      };
    } finally {
      await client.deleteObjects((await client.list('')).keys).catch(() => undefined);
      await client.close();
    }
  } finally {
    rgw?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

export const s3Benchmark: Benchmark = {
  name: 's3',
  summary: 'cold restore from an S3 datastore in Ceph RGW vs from a local datastore',
  description: `
Writes a deterministic synthetic VM disk (default 1 GiB), backs it up (zstd, 4 MiB
chunks) into a local datastore and into an S3 datastore, then per sample restores it
from each (alternating) with restoreArchive through a fresh ChunkCache. The S3 store is
in a Ceph RGW that the benchmark starts on loopback with scripts/rgw-up.sh (needs the
radosgw, ceph-mon and ceph-osd packages), or at --endpoint (keys from AWS_ACCESS_KEY_ID
and AWS_SECRET_ACCESS_KEY; a fresh bucket is created and emptied afterwards).`,
  defaultSamples: 3,
  options: [
    { name: 'size', type: 'string', valueName: 'SIZE', description: 'image size', defaultText: '1GiB' },
    DECODE_WORKERS_OPTION,
    CACHE_SIZE_OPTION,
    {
      name: 'lanes',
      type: 'string',
      valueName: 'LIST',
      description: 'one S3 case per value: background fetches in flight (S3ChunkSource backgroundFetches)',
      defaultText: '4',
    },
    {
      name: 'endpoint',
      type: 'string',
      valueName: 'URL',
      description: 'an S3 endpoint to use instead of starting an RGW',
      defaultText: 'start one',
    },
    VM_SEED_OPTION,
    SCRATCH_DIR_OPTION,
  ],
  run: runS3,
};
