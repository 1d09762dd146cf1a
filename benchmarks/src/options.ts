/**
 * Reading a benchmark's own options from its {@link BenchContext}: the pieces every
 * `readSettings` needs (a string option, the iteration count with --quick, a chunk
 * cache size), so each benchmark parses them the same way.
 */

import type { BenchContext } from './benchmark.js';
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
