/**
 * Settings and fixtures of `bench scale`: the command-line options, and the backed-up VM
 * it restores: `snapshots` successive backups of one synthetic VM (vmgen drives, each
 * backup a few changed blocks after the last), stored in a local datastore and, for the
 * RGW origins, with the same snapshot names in an S3 datastore in RGW. Each drive's
 * SHA-256 is computed from its spec, so every restored byte can be checked.
 */

import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BackupStore, backup, Datastore } from '@liverestore/datastore';
import type { ChunkIndex } from '@liverestore/format';
import { DEFAULT_CACHE_BYTES } from '@liverestore/reader';
import { type ImageSpec, mutate, sha256OfImage, vmImageSet, writeImageFile } from '@liverestore/testkit';
import type { BenchContext, OptionSpec } from './benchmark.js';
import { UsageError } from './errors.js';
import { readIndexes } from './live-systems.js';
import { iterationCount, optionText, SCRATCH_DIR_OPTION } from './options.js';
import { ORIGIN_NAMES, type OriginName } from './scale-origins.js';
import type { ReaderTask } from './scale-reader-child.js';
import { parseBytes, parseList, parseNonNegativeInt, parsePositiveInt } from './units.js';

/** Every setting that shapes the numbers. */
export interface ScaleSettings {
  readonly iterations: number;
  readonly origins: readonly OriginName[];
  readonly readers: number;
  readonly processes: number;
  readonly snapshots: number;
  readonly drives: number;
  readonly sizeBytes: number;
  /** Changed 4 KiB blocks per drive from one snapshot to the next. */
  readonly changes: number;
  /** ChunkCache budget of each reader process: its configured memory budget. */
  readonly cacheBytes: number;
  /** Decode threads of each reader process. */
  readonly workers: number;
  /** Each reader process's ChunkCache `blobBudgetBytes`; undefined: the cache's default. */
  readonly blobBudgetBytes: number | undefined;
  readonly readaheadChunks: number;
  readonly readBytes: number;
  /**
   * `snapshot` (default): one source per snapshot a reader process opens; `process`: the
   * process opens the origin once and all its snapshots share that source (its
   * connections and fetch lanes). Measured: the same peak memory either way.
   */
  readonly sources: 'process' | 'snapshot';
  /**
   * Diagnostic: a full garbage collection in each reader process's main thread this often
   * (0: never, as in use). What it takes off the peak RSS was garbage not yet collected.
   */
  readonly gcEveryMs: number;
  readonly seed: number;
  readonly dir: string;
  /** An S3 endpoint to use instead of starting an RGW (keys from AWS_*). */
  readonly endpoint: string | undefined;
}

/** Memory a process may use beyond its configured budget (issue 16's goal). */
export const MEMORY_SLACK_BYTES = 150 * 1024 ** 2;

export const SCALE_OPTIONS: readonly OptionSpec[] = [
  { name: 'readers', type: 'string', valueName: 'N', description: 'concurrent readers', defaultText: '40' },
  {
    name: 'processes',
    type: 'string',
    valueName: 'N',
    description: 'reader processes the readers are spread over',
    defaultText: '4',
  },
  {
    name: 'origins',
    type: 'string',
    valueName: 'LIST',
    description: `origins, alternating per iteration: ${ORIGIN_NAMES.join(', ')}`,
    defaultText: 'all',
  },
  { name: 'iterations', type: 'string', valueName: 'N', description: 'iterations', defaultText: '2' },
  { name: 'quick', type: 'boolean', description: 'one iteration' },
  { name: 'snapshots', type: 'string', valueName: 'N', description: 'snapshots of the VM', defaultText: '4' },
  { name: 'drives', type: 'string', valueName: 'N', description: 'drives per snapshot', defaultText: '2' },
  {
    name: 'size',
    type: 'string',
    valueName: 'SIZE',
    description: 'size of each drive',
    defaultText: '64MiB',
  },
  {
    name: 'changes',
    type: 'string',
    valueName: 'N',
    description: 'changed 4 KiB blocks per drive from one snapshot to the next',
    defaultText: '8',
  },
  {
    name: 'cache-size',
    type: 'string',
    valueName: 'SIZE',
    description: 'ChunkCache budget of each reader process',
    defaultText: '256MiB',
  },
  {
    name: 'workers',
    type: 'string',
    valueName: 'N',
    description: 'decode threads per reader process',
    defaultText: '1',
  },
  {
    name: 'blob-budget',
    type: 'string',
    valueName: 'SIZE',
    description:
      "each reader process's blob budget (ChunkCache blobBudgetBytes: blobs between fetch and decode)",
    defaultText: "the cache's default (16 MiB for one decode thread)",
  },
  {
    name: 'readahead',
    type: 'string',
    valueName: 'N',
    description: 'readahead chunks per reader',
    defaultText: '4',
  },
  {
    name: 'sources',
    type: 'string',
    valueName: 'process|snapshot',
    description: 'one source per reader process, shared by its snapshots, or one per snapshot',
    defaultText: 'snapshot',
  },
  {
    name: 'gc-every',
    type: 'string',
    valueName: 'MS',
    description: "diagnostic: force a GC in each reader process's main thread every MS",
    defaultText: '0 (never)',
  },
  {
    name: 'endpoint',
    type: 'string',
    valueName: 'URL',
    description: 'an S3 endpoint for the rgw origins instead of starting an RGW (keys from AWS_*)',
    defaultText: 'start one',
  },
  { name: 'seed', type: 'string', valueName: 'N', description: 'vmgen VM seed', defaultText: '1' },
  SCRATCH_DIR_OPTION,
];

function parseOrigins(text: string | undefined): OriginName[] {
  if (text === undefined || text === 'all') return [...ORIGIN_NAMES];
  const names = [...new Set(parseList(text))];
  for (const n of names)
    if (!(ORIGIN_NAMES as readonly string[]).includes(n))
      throw new UsageError(`--origins: unknown origin "${n}" (one of: ${ORIGIN_NAMES.join(', ')})`);
  if (names.length === 0) throw new UsageError('--origins must name at least one origin');
  return names as OriginName[];
}

function parseSources(text: string | undefined): ScaleSettings['sources'] {
  if (text === undefined || text === 'snapshot') return 'snapshot';
  if (text === 'process') return 'process';
  throw new UsageError(`--sources must be process or snapshot, got "${text}"`);
}

export function readScaleSettings(context: BenchContext): ScaleSettings {
  const str = optionText(context);
  const int = (name: string, fallback: number): number =>
    str(name) === undefined ? fallback : parsePositiveInt(str(name)!, `--${name}`);
  const sizeBytes = parseBytes(str('size') ?? '64MiB', '--size');
  if (sizeBytes < 1024 ** 2 || sizeBytes % 4096 !== 0)
    throw new UsageError('--size must be at least 1MiB and a multiple of 4KiB');
  const cacheBytes = parseBytes(str('cache-size') ?? `${DEFAULT_CACHE_BYTES}`, '--cache-size');
  if (cacheBytes < 4 * 1024 ** 2) throw new UsageError('--cache-size must be at least 4MiB (one chunk)');
  return {
    iterations: iterationCount(context, 1),
    origins: parseOrigins(str('origins')),
    readers: int('readers', 40),
    processes: int('processes', 4),
    snapshots: int('snapshots', 4),
    drives: int('drives', 2),
    sizeBytes,
    changes: str('changes') === undefined ? 8 : parseNonNegativeInt(str('changes')!, '--changes'),
    cacheBytes,
    workers: int('workers', 1),
    blobBudgetBytes:
      str('blob-budget') === undefined ? undefined : parseBytes(str('blob-budget')!, '--blob-budget'),
    readaheadChunks:
      str('readahead') === undefined ? 4 : parseNonNegativeInt(str('readahead')!, '--readahead'),
    readBytes: 4 * 1024 ** 2,
    sources: parseSources(str('sources')),
    gcEveryMs: str('gc-every') === undefined ? 0 : parseNonNegativeInt(str('gc-every')!, '--gc-every'),
    seed: str('seed') === undefined ? 1 : parseNonNegativeInt(str('seed')!, '--seed'),
    dir: str('dir') ?? tmpdir(),
    endpoint: str('endpoint'),
  };
}

/** One backed-up drive: what a reader restores and what it must get. */
export interface DriveFixture extends ReaderTask {
  readonly sha256: string;
  readonly index: ChunkIndex;
}

/** The specs of snapshot `k`'s drives: the VM's drives with k layers of changes. */
export function snapshotSpecs(s: ScaleSettings, k: number): { name: string; spec: ImageSpec }[] {
  return vmImageSet(s.seed, { drives: s.drives, sizeBytes: s.sizeBytes }).map((d) => {
    let spec = d.spec;
    for (let layer = 1; layer <= k; layer++) spec = mutate(spec, { seed: layer, changes: s.changes });
    return { name: d.name, spec };
  });
}

/**
 * Backs every snapshot up into each of `stores` under the same snapshot time (so names
 * agree across stores); returns one fixture per (snapshot, drive), snapshot by snapshot.
 */
export async function backUpSnapshots(
  s: ScaleSettings,
  stores: readonly BackupStore[],
  localDir: string,
  scratch: string,
  progress: (line: string) => void,
): Promise<DriveFixture[]> {
  const out: DriveFixture[] = [];
  const firstTime = Math.floor(Date.now() / 1000) - s.snapshots;
  for (let k = 0; k < s.snapshots; k++) {
    progress(`snapshot ${k + 1}/${s.snapshots}: writing ${s.drives} drives and backing them up …`);
    const drives = snapshotSpecs(s, k);
    const inputs = [];
    for (const d of drives) {
      const path = join(scratch, `${d.name}.raw`);
      await writeImageFile(d.spec, path);
      inputs.push({ name: d.name, path });
    }
    let snapshot = '';
    for (const store of stores)
      snapshot = (await backup(store, { type: 'vm', id: '100', inputs, backupTime: firstTime + k })).snapshot;
    for (const input of inputs) await rm(input.path);
    const indexes = await readIndexes(
      localDir,
      snapshot,
      drives.map((d) => d.name),
    );
    for (const [i, d] of drives.entries())
      out.push({ snapshot, drive: d.name, sha256: await sha256OfImage(d.spec), index: indexes[i]!.index });
  }
  return out;
}

/** A local datastore in `scratch` (for serve), created empty. */
export function createLocalStore(scratch: string): Promise<Datastore> {
  return Datastore.create(join(scratch, 'store'));
}
