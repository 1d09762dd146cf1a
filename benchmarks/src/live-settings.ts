/**
 * The settings of `bench live-restore`: its options, their defaults and the quick set,
 * and how the command line becomes {@link Settings}.
 */

import { availableParallelism, tmpdir } from 'node:os';
import { type ContentMix, DATA_DISK_MIX, SYSTEM_DISK_MIX } from '@liverestore/testkit';
import type { BenchContext, OptionSpec } from './benchmark.js';
import { MIXES } from './codec-inputs.js';
import { UsageError } from './errors.js';
import { SYSTEMS, type System } from './live-report.js';
import { defaultGuestReads } from './live-workload.js';
import { cacheSizeOption, iterationCount, optionText } from './options.js';
import {
  parseBitsPerSecond,
  parseBytes,
  parseList,
  parseMilliseconds,
  parseNonNegativeInt,
  parsePositiveInt,
} from './units.js';

export type Mode = 'nbd' | 'api';

/** How the benchmark's store is written: the product default, as a user's backup would be. */
export const STORE_COMPRESSION = 'zstd' as const;

/** The mixes `--mix` accepts: vm (system disk + data disks, testkit's VM), or one mix for every drive. */
export const DRIVE_MIXES: ReadonlyMap<string, ContentMix | undefined> = new Map<
  string,
  ContentMix | undefined
>([
  ['vm', undefined],
  ['system', SYSTEM_DISK_MIX],
  ['data', DATA_DISK_MIX],
  ...MIXES.filter((m) => m.name !== 'vm').map((m) => [m.name, m.mix] as [string, ContentMix]),
]);

export interface Settings {
  readonly iterations: number;
  /** The systems each iteration runs, in {@link SYSTEMS} order (`--series`). */
  readonly series: readonly System[];
  readonly sizeBytes: number;
  readonly drives: number;
  readonly mix: string;
  readonly cacheBytes: number;
  readonly workers: number;
  readonly readaheadChunks: number;
  /** C's decode threads, standing in for PBS's tokio workers (0: inline, the default). */
  readonly pbsDecodeThreads: number;
  readonly rttMs: number;
  readonly bitsPerSecond: number;
  readonly mode: Mode;
  readonly guestReads: number;
  readonly seed: number;
  readonly quick: boolean;
  readonly scaling: readonly number[];
  readonly scalingSizeBytes: number;
  readonly profileDir: string | undefined;
  readonly dir: string;
}

export const DEFAULTS = { iterations: 12, size: '512MiB', drives: 2, scalingSize: '512MiB' } as const;
export const QUICK = { iterations: 3, size: '256MiB' } as const;

export function readSettings(context: BenchContext): Settings {
  const o = context.options;
  const str = optionText(context);
  const quick = o.quick === true;
  const iterations = iterationCount(context, QUICK.iterations);
  const sizeBytes = parseBytes(str('size') ?? (quick ? QUICK.size : DEFAULTS.size), '--size');
  if (sizeBytes < 8 * 1024 ** 2) throw new UsageError('--size must be at least 8MiB');
  const drives = str('drives') === undefined ? DEFAULTS.drives : parsePositiveInt(str('drives')!, '--drives');
  const mix = str('mix') ?? 'vm';
  if (!DRIVE_MIXES.has(mix))
    throw new UsageError(`--mix: unknown mix "${mix}" (one of: ${[...DRIVE_MIXES.keys()].join(', ')})`);
  const mode = str('mode') ?? 'nbd';
  if (mode !== 'nbd' && mode !== 'api') throw new UsageError(`--mode must be nbd or api, got "${mode}"`);
  const readahead = str('readahead');
  if (readahead !== undefined && !/^\d+$/.test(readahead))
    throw new UsageError(`--readahead must be a non-negative integer, got "${readahead}"`);
  const scaling =
    o.scaling === true
      ? str('scaling-drives') === undefined
        ? [1, 2, 4, 8]
        : parseList(str('scaling-drives')!).map((d) => parsePositiveInt(d, '--scaling-drives'))
      : [];
  const cacheBytes = cacheSizeOption(context, '256MiB');
  return {
    iterations,
    series: parseSeries(str('series')),
    sizeBytes,
    drives,
    mix,
    cacheBytes,
    workers:
      str('workers') === undefined ? availableParallelism() : parsePositiveInt(str('workers')!, '--workers'),
    readaheadChunks: readahead === undefined ? 8 : Number(readahead),
    pbsDecodeThreads:
      str('pbs-decode-threads') === undefined
        ? 0
        : parseNonNegativeInt(str('pbs-decode-threads')!, '--pbs-decode-threads'),
    rttMs: parseMilliseconds(str('rtt') ?? '1ms', '--rtt'),
    bitsPerSecond: parseBitsPerSecond(str('bandwidth') ?? '1Gbit', '--bandwidth'),
    mode,
    guestReads:
      str('guest-reads') === undefined
        ? defaultGuestReads(sizeBytes)
        : parsePositiveInt(str('guest-reads')!, '--guest-reads'),
    seed: str('seed') === undefined ? 1 : parsePositiveInt(str('seed')!, '--seed'),
    quick,
    scaling,
    scalingSizeBytes: parseBytes(
      str('scaling-size') ?? (quick ? QUICK.size : DEFAULTS.scalingSize),
      '--scaling-size',
    ),
    profileDir: str('profile'),
    dir: str('dir') ?? tmpdir(),
  };
}

/**
 * `--series LIST`: which of A, C and B each iteration runs (any order and case; they run in
 * the order A, C, B). B's speed-ups need B and the other system in the same run.
 */
export function parseSeries(text: string | undefined): readonly System[] {
  if (text === undefined) return SYSTEMS;
  const asked = new Set<string>();
  for (const item of parseList(text)) {
    const name = item.toUpperCase();
    if (!(SYSTEMS as readonly string[]).includes(name))
      throw new UsageError(`--series: unknown series "${item}" (any of: ${SYSTEMS.join(', ')})`);
    asked.add(name);
  }
  if (asked.size === 0) throw new UsageError('--series needs at least one of A, C, B');
  return SYSTEMS.filter((system) => asked.has(system));
}

/** The options `bench live-restore` takes (its help). */
export const LIVE_RESTORE_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'iterations',
    type: 'string',
    valueName: 'N',
    description: 'iterations of A, C and B (same as --samples)',
    defaultText: String(DEFAULTS.iterations),
  },
  {
    name: 'series',
    type: 'string',
    valueName: 'LIST',
    description: "systems each iteration runs, of A, C, B (B's speed-up over a system needs both)",
    defaultText: SYSTEMS.join(','),
  },
  {
    name: 'size',
    type: 'string',
    valueName: 'SIZE',
    description: 'size of each drive',
    defaultText: DEFAULTS.size,
  },
  {
    name: 'drives',
    type: 'string',
    valueName: 'N',
    description: 'drives of the VM',
    defaultText: String(DEFAULTS.drives),
  },
  {
    name: 'mix',
    type: 'string',
    valueName: 'NAME',
    description: `content: ${[...DRIVE_MIXES.keys()].join(', ')} (vm = system disk + data disks)`,
    defaultText: 'vm',
  },
  {
    name: 'cache-size',
    type: 'string',
    valueName: 'SIZE',
    description: "B's chunk cache, shared by all drives",
    defaultText: '256MiB',
  },
  {
    name: 'workers',
    type: 'string',
    valueName: 'N',
    description: "B's decode threads",
    defaultText: 'machine parallelism',
  },
  {
    name: 'readahead',
    type: 'string',
    valueName: 'N',
    description: "B's readahead window in chunks",
    defaultText: '8',
  },
  {
    name: 'pbs-decode-threads',
    type: 'string',
    valueName: 'N',
    description: "C's decode threads, as PBS's tokio workers (0: inline on the event loop)",
    defaultText: '0',
  },
  {
    name: 'rtt',
    type: 'string',
    valueName: 'TIME',
    description: 'round-trip time added by the proxy (1ms, 500us, 0)',
    defaultText: '1ms',
  },
  {
    name: 'bandwidth',
    type: 'string',
    valueName: 'RATE',
    description: 'bandwidth cap per direction (1Gbit, 100Mbit, unlimited)',
    defaultText: '1Gbit',
  },
  {
    name: 'mode',
    type: 'string',
    valueName: 'nbd|api',
    description: 'drive the workload over NBD or through the library',
    defaultText: 'nbd',
  },
  {
    name: 'guest-reads',
    type: 'string',
    valueName: 'N',
    description: 'guest reads per drive',
    defaultText: 'one per 2 MiB of drive',
  },
  {
    name: 'seed',
    type: 'string',
    valueName: 'N',
    description: 'testkit VM seed and guest trace seed',
    defaultText: '1',
  },
  {
    name: 'quick',
    type: 'boolean',
    description: `quick setting: ${QUICK.iterations} iterations of ${QUICK.size} drives (explicit options win)`,
  },
  {
    name: 'scaling',
    type: 'boolean',
    description: 'also run B at 1, 2, 4, 8 drives and a cold full restore vs the decode limit',
  },
  {
    name: 'scaling-drives',
    type: 'string',
    valueName: 'LIST',
    description: 'drive counts of the scaling run',
    defaultText: '1,2,4,8',
  },
  {
    name: 'scaling-size',
    type: 'string',
    valueName: 'SIZE',
    description: 'size of each drive in the scaling run',
    defaultText: DEFAULTS.scalingSize,
  },
  {
    name: 'profile',
    type: 'string',
    valueName: 'DIR',
    description: 'write --cpu-prof profiles of the reading processes to DIR',
  },
  {
    name: 'dir',
    type: 'string',
    valueName: 'DIR',
    description: 'scratch directory',
    defaultText: 'the OS temp dir',
  },
];
