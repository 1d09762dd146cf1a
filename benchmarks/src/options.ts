/**
 * Reading a benchmark's own options from its {@link BenchContext}: the pieces every
 * `readSettings` needs (a string option, the iteration count with --quick, a chunk
 * cache size), so each benchmark parses them the same way.
 */

import type { BenchContext, OptionSpec } from './benchmark.js';
import { UsageError } from './errors.js';
import { parseBytes, parsePositiveInt } from './units.js';

/** The text of each string option: `text('size')` is undefined when --size was not given. */
export function optionText(context: BenchContext): (name: string) => string | undefined {
  const o = context.options;
  return (name) => (typeof o[name] === 'string' ? (o[name] as string) : undefined);
}

/** --iterations when given, else `quickIterations` under --quick, else --samples (or the default). */
export function iterationCount(context: BenchContext, quickIterations: number): number {
  const text = optionText(context)('iterations');
  if (text !== undefined) return parsePositiveInt(text, '--iterations');
  return context.options.quick === true ? quickIterations : context.samples;
}

/** --cache-size in bytes (default `defaultText`): at least one 4 MiB chunk. */
export function cacheSizeOption(context: BenchContext, defaultText: string): number {
  const bytes = parseBytes(optionText(context)('cache-size') ?? defaultText, '--cache-size');
  if (bytes < 4 * 1024 ** 2) throw new UsageError('--cache-size must be at least 4MiB (one chunk)');
  return bytes;
}

/** `--dir DIR`: where a benchmark writes its images and stores. */
export const SCRATCH_DIR_OPTION: OptionSpec = {
  name: 'dir',
  type: 'string',
  valueName: 'DIR',
  description: 'scratch directory',
  defaultText: 'the OS temp dir',
};

/** `--seed N`: the seed of testkit's synthetic VM images. */
export const VM_SEED_OPTION: OptionSpec = {
  name: 'seed',
  type: 'string',
  valueName: 'N',
  description: 'testkit VM seed',
  defaultText: '1',
};

/** `--workers N`: decode threads of a restore. */
export const DECODE_WORKERS_OPTION: OptionSpec = {
  name: 'workers',
  type: 'string',
  valueName: 'N',
  description: 'decode threads',
  defaultText: 'machine parallelism',
};

/** `--cache-size SIZE`: the chunk cache of a restore, 256 MiB unless given. */
export const CACHE_SIZE_OPTION: OptionSpec = {
  name: 'cache-size',
  type: 'string',
  valueName: 'SIZE',
  description: 'chunk cache budget',
  defaultText: '256MiB',
};
