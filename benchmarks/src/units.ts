/**
 * Parsing and printing of sizes, durations and rates.
 *
 * Throughput is quoted in decimal MB/s (10^6 bytes per second), as disk and network
 * speeds are; sizes of chunks and images in binary units (MiB, GiB), as they are chosen.
 */

import { parseByteSize } from '@liverestore/format/internal';
import { UsageError } from './errors.js';

/** Parses `2GiB`, `512M`, `1.5g`, `4194304` (bare letters are binary units, as in qemu-img). */
export function parseBytes(text: string, option: string): number {
  const value = parseByteSize(text);
  if (value === undefined) {
    throw new UsageError(`${option} must be a size like 2GiB, 512M or 1048576, got "${text}"`);
  }
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`${option} must be a whole number of bytes, got "${text}"`);
  }
  return value;
}

/** Parses a positive integer option (`--samples 5`). */
export function parsePositiveInt(text: string, option: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new UsageError(`${option} must be a positive integer, got "${text}"`);
  }
  return value;
}

/** Parses a non-negative integer option (`--seed 0`). */
export function parseNonNegativeInt(text: string, option: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`${option} must be a non-negative integer, got "${text}"`);
  }
  return value;
}

/** Parses a comma-separated list (`--mix text,random`), trimming and dropping empty items. */
export function parseList(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** `1.5 GiB`, for sizes that were chosen in binary units. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${bytes} B`;
  const digits = value >= 100 || Number.isInteger(value) ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

/** A number with thousands separators and a sensible number of decimals for a table. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Decimal MB/s of `bytes` processed in `seconds`. */
export function mbPerSecond(bytes: number, seconds: number): number {
  return bytes / 1e6 / seconds;
}

/** `812.4 MB/s`, `37,412 MB/s`. */
export function formatRate(mbps: number): string {
  return `${formatNumber(mbps)} MB/s`;
}

/** `4.21 ms`, `17.3 s`, `820 µs`: three significant figures in the nearest unit. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return 'n/a';
  const abs = Math.abs(seconds);
  if (abs >= 1) return `${formatNumber(seconds)} s`;
  if (abs >= 1e-3) return `${formatNumber(seconds * 1e3)} ms`;
  return `${formatNumber(seconds * 1e6)} µs`;
}

/** `±1.23 %`, or `n/a` when there were too few samples for an interval. */
export function formatPercent(percent: number, sign = ''): string {
  if (!Number.isFinite(percent)) return 'n/a';
  return `${sign}${formatNumber(percent)} %`;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { us: 0.001, µs: 0.001, ms: 1, s: 1000 };

/** Parses a latency like `1ms`, `500us`, `0.25ms`, `0` into milliseconds. */
export function parseMilliseconds(text: string, option: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(us|µs|ms|s)?$/i.exec(text.trim());
  if (match === null) throw new UsageError(`${option} must be a duration like 1ms or 500us, got "${text}"`);
  const unit =
    match[2] === undefined
      ? Number(match[1]) === 0
        ? 1
        : undefined
      : DURATION_UNITS[match[2].toLowerCase()];
  if (unit === undefined) throw new UsageError(`${option} needs a unit (ms, us or s), got "${text}"`);
  return Number(match[1]) * unit;
}

const BIT_RATE_UNITS: Readonly<Record<string, number>> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 };

/** Parses a bandwidth like `1Gbit`, `100Mbit`, `2.5gbit` (bits per second); `0` or `unlimited` = no cap. */
export function parseBitsPerSecond(text: string, option: string): number {
  if (/^(0|unlimited|off)$/i.test(text.trim())) return 0;
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?bit)(?:\/s)?$/i.exec(text.trim());
  if (match === null)
    throw new UsageError(`${option} must be a rate like 1Gbit, 100Mbit or unlimited, got "${text}"`);
  return Number(match[1]) * BIT_RATE_UNITS[match[2]!.toLowerCase()]!;
}

/** `1 Gbit/s`, `100 Mbit/s`, `unlimited`. */
export function formatBitRate(bitsPerSecond: number): string {
  if (bitsPerSecond <= 0) return 'unlimited';
  for (const [unit, scale] of [
    ['Gbit/s', 1e9],
    ['Mbit/s', 1e6],
    ['kbit/s', 1e3],
  ] as const) {
    if (bitsPerSecond >= scale) return `${formatNumber(bitsPerSecond / scale).replace(/\.0+$/, '')} ${unit}`;
  }
  return `${bitsPerSecond} bit/s`;
}
