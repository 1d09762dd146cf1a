import { parseByteSize } from '@liverestore/format/internal';
import { UsageError } from './errors.js';

/** Parses `4MiB`, `512k`, `1G`, `4194304` (bare letters are binary units, as in qemu-img). */
export function parseBytes(text: string, option: string): number {
  const value = parseByteSize(text);
  if (value === undefined) {
    throw new UsageError(`${option} must be a size like 4MiB, 512k or 1048576, got "${text}"`);
  }
  if (!Number.isSafeInteger(value))
    throw new UsageError(`${option} must be a whole number of bytes, got "${text}"`);
  return value;
}

/** `1.5 GiB`, for humans. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/** Decimal MB/s, as disk and network throughput is usually quoted. */
export function formatRate(bytes: number, seconds: number): string {
  return `${(bytes / 1e6 / Math.max(seconds, 1e-9)).toFixed(1)} MB/s`;
}
