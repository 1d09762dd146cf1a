/**
 * Numbers read from outside a process: its peak resident set (Linux /proc), and the
 * chunk counters of a `liverestore serve` (its Prometheus /metrics), so A and B are
 * measured the same way whatever runs inside them.
 */

import { readFile } from 'node:fs/promises';

/**
 * Peak resident set size of process `pid` in bytes (VmHWM: the high-water mark since
 * it started), or undefined where /proc is missing.
 */
export async function peakRssBytes(pid: number | 'self'): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** Chunk blobs a `liverestore serve` has been asked for so far (not pieces), and the body bytes sent. */
export interface ServeChunkCounters {
  readonly requests: number;
  readonly bytes: number;
}

/** Reads the server's chunk-fetch counter and the `route="chunk"` series of its sent-bytes counter. */
export function parseChunkCounters(metrics: string): ServeChunkCounters {
  let requests = 0;
  let bytes = 0;
  for (const line of metrics.split('\n')) {
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!Number.isFinite(value)) continue;
    if (line.startsWith('liverestore_http_chunk_fetches_total ')) requests += value;
    else if (line.startsWith('liverestore_http_sent_bytes_total{') && line.includes('route="chunk"'))
      bytes += value;
  }
  return { requests, bytes };
}

/** Reads the chunk counters of the server at `baseUrl` (directly, not through the proxy). */
export async function serveChunkCounters(baseUrl: string): Promise<ServeChunkCounters> {
  const response = await fetch(new URL('/metrics', baseUrl));
  if (!response.ok) throw new Error(`GET /metrics: HTTP ${response.status}`);
  return parseChunkCounters(await response.text());
}

/** Linux reports /proc/PID/stat times in USER_HZ ticks, 100 per second on every architecture. */
const USER_HZ = 100;

/**
 * CPU seconds (user + system, all threads) process `pid` has used so far, or undefined
 * where /proc is missing or the process is gone.
 */
export async function processCpuSeconds(pid: number | 'self'): Promise<number | undefined> {
  return statTicks(pid, 11);
}

/**
 * CPU seconds (user + system) of this process's children that have exited and been
 * reaped, their own reaped children included (cutime + cstime): the only way to count
 * a short-lived child such as fio, whose /proc entry is gone when it ends. NaN where
 * /proc is missing.
 */
export async function reapedChildrenCpuSeconds(): Promise<number> {
  return (await statTicks('self', 13)) ?? Number.NaN;
}

/** Sum of the /proc/PID/stat tick counters at `field` and `field + 1` (after the name), in seconds. */
async function statTicks(pid: number | 'self', field: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const user = Number(fields[field]);
    const system = Number(fields[field + 1]);
    return Number.isFinite(user) && Number.isFinite(system) ? (user + system) / USER_HZ : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds and peak RSS of a running process, read together. */
export interface ProcessUsage {
  readonly cpuSeconds: number;
  readonly peakRssBytes: number;
}

/** {@link processCpuSeconds} and {@link peakRssBytes} of `pid`; NaN for what cannot be read. */
export async function processUsage(pid: number): Promise<ProcessUsage> {
  return {
    cpuSeconds: (await processCpuSeconds(pid)) ?? Number.NaN,
    peakRssBytes: (await peakRssBytes(pid)) ?? Number.NaN,
  };
}
