/**
 * The machine a result was measured on. A throughput number without its CPU, core
 * count and Node version cannot be compared with anything, so every result carries
 * this record and every table and plot prints its one-line summary.
 */

import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, totalmem, type } from 'node:os';
import { zstdCodecInfo } from '@liverestore/format';
import { formatBytes } from './units.js';

/** Where and when a benchmark ran. */
export interface MachineInfo {
  /** `os.cpus()[0].model`. */
  readonly cpuModel: string;
  /** Logical CPUs (`os.cpus().length`). */
  readonly cores: number;
  /** `os.availableParallelism()`: what the backup writer uses as its default thread count. */
  readonly parallelism: number;
  readonly totalMemoryBytes: number;
  readonly nodeVersion: string;
  /** Versions of the native libraries behind node:zlib and node:crypto. */
  readonly zlibVersion: string;
  readonly opensslVersion: string;
  /**
   * The zstd decoder this process chose (`zstd-napi 0.0.13 (libzstd 1.5.7)`, node:zlib or
   * WebAssembly; formats.md says how): the liverestore processes a benchmark starts choose
   * by the same rule, so two builds with different codecs are not compared unawares.
   */
  readonly zstdDecoder: string;
  /** `Linux 6.8.0 (linux x64)`. */
  readonly os: string;
  /** ISO 8601 time the run started. */
  readonly date: string;
  /**
   * 1-minute load average at the start (and, set by the CLI, at the end) of the run:
   * anything else running on the machine shows here and explains wide ± intervals.
   */
  readonly loadAverage1mStart: number;
  readonly loadAverage1mEnd?: number;
}

/** Describes the current machine; `now` is injectable for tests. */
export function machineInfo(now: Date = new Date()): MachineInfo {
  const cpuList = cpus();
  return {
    cpuModel: cpuList[0]?.model.trim() ?? 'unknown CPU',
    cores: cpuList.length,
    parallelism: availableParallelism(),
    totalMemoryBytes: totalmem(),
    nodeVersion: process.version,
    zlibVersion: process.versions.zlib ?? 'unknown',
    opensslVersion: process.versions.openssl ?? 'unknown',
    zstdDecoder: zstdCodecInfo.decoder,
    os: `${type()} ${release()} (${platform()} ${process.arch})`,
    date: now.toISOString(),
    loadAverage1mStart: loadavg()[0] ?? 0,
  };
}

/** `load average 0.12 → 1.03` (1 minute, start → end of the run). */
export function loadLine(m: MachineInfo): string {
  const end = m.loadAverage1mEnd === undefined ? '' : ` → ${m.loadAverage1mEnd.toFixed(2)}`;
  return `1-min load average ${m.loadAverage1mStart.toFixed(2)}${end}`;
}

/** The one line printed under every table title and plot title. */
export function machineLine(m: MachineInfo): string {
  return (
    `${m.cpuModel}, ${m.cores} cores, ${formatBytes(m.totalMemoryBytes)} RAM, ` +
    `Node ${m.nodeVersion}, ${m.os}, ${m.date.slice(0, 10)}`
  );
}

/** Linux reports /proc/stat times in USER_HZ ticks, which is 100 per second on every architecture. */
const USER_HZ = 100;

/**
 * CPU seconds the whole machine has spent busy (all processes, all cores) since boot,
 * from /proc/stat; undefined where that file does not exist. The difference over a
 * measurement minus the benchmark's own CPU time is what other processes took: on a
 * shared machine, the number that says whether a slow sample was ours.
 */
export function machineBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
    if (!line.startsWith('cpu ') || fields.some((f) => !Number.isFinite(f))) return undefined;
    return (user + nice + system + irq + softirq + steal) / USER_HZ;
  } catch {
    return undefined;
  }
}
