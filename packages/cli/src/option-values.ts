import { UsageError } from './errors.js';
import { parseBytes } from './units.js';

/**
 * The most decode threads a command accepts for `--workers`. Each worker is a thread with
 * its own heap; `--workers 100000` started 2,690 threads and 6.2 GB RSS in 10 s before it
 * was bounded. 64 is far beyond what decoding can use (it is CPU-bound: more workers than
 * cores only add memory) and still leaves room for large machines.
 */
export const MAX_WORKERS = 64;

/**
 * The slowest `--rate-limit` a command accepts (4 KiB/s). A slower copy would never end in
 * practice, and the wait for one 4 MiB chunk at 1 B/s (≈ 48 days) overflows Node's timers
 * (a `TimeoutOverflowWarning` per wait, then a 1 ms timeout: no limit at all).
 */
export const MIN_RATE_LIMIT_BYTES_PER_SECOND = 4 * 1024;

/** `--workers N`: an integer from 0 (decode inline) to {@link MAX_WORKERS}; undefined when not given. */
export function parseWorkers(text: string | undefined, command: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isInteger(value) || value < 0 || value > MAX_WORKERS)
    throw new UsageError(`${command}: --workers must be an integer from 0 to ${MAX_WORKERS}, got "${text}"`);
  return value;
}

/** An option that takes a count from 0 up (`--readahead 0`); undefined when not given. */
export function parseNonNegativeInteger(
  text: string | undefined,
  option: string,
  command: string,
): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0)
    throw new UsageError(`${command}: ${option} must be a non-negative integer, got "${text}"`);
  return value;
}

/** `200MB/s`, `50MiB/s`, `1g` (per second implied) → bytes per second, at least {@link MIN_RATE_LIMIT_BYTES_PER_SECOND}. */
export function parseRateLimit(text: string, command: string): number {
  const value = parseBytes(text.replace(/\/s$/i, ''), '--rate-limit');
  if (value <= 0) throw new UsageError(`${command}: --rate-limit must be more than 0, got "${text}"`);
  if (value < MIN_RATE_LIMIT_BYTES_PER_SECOND)
    throw new UsageError(`${command}: --rate-limit must be at least 4KiB/s, got "${text}"`);
  return value;
}
