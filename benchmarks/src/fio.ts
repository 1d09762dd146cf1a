/**
 * fio as the benchmarks' NBD client (`--ioengine=nbd`, libnbd): one job, its JSON output
 * reduced to the read side's bytes, rate and completion-latency percentiles, and the CPU
 * it used (fio forks its job; both are counted once reaped).
 */

import { exitedError, spawnTool, type ToolProcess } from './children.js';
import { reapedChildrenCpuSeconds } from './proc-stats.js';

/** Percentiles asked of fio (`--percentile_list`), as its JSON keys them. */
const PERCENTILES = { p50: '50.000000', p99: '99.000000', p999: '99.900000' } as const;

/** The read side of one fio job. */
export interface FioReads {
  /** Bytes read. */
  readonly bytes: number;
  readonly ios: number;
  /** Bytes per second over the job's runtime. */
  readonly bytesPerSecond: number;
  readonly iops: number;
  readonly runtimeMs: number;
  /** Completion latency percentiles, in nanoseconds. */
  readonly p50Ns: number;
  readonly p99Ns: number;
  readonly p999Ns: number;
  /**
   * CPU seconds (user + system) of fio and its job process, from this process's reaped
   * children's times; NaN when another child was reaped while fio ran.
   */
  readonly cpuSeconds: number;
}

/** Parses fio's `--output-format=json` (warnings may come before the document). */
export function parseFioJson(stdout: string): Omit<FioReads, 'cpuSeconds'> {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error('fio printed no JSON');
  const json = JSON.parse(stdout.slice(start)) as {
    jobs: {
      error: number;
      read: {
        io_bytes: number;
        total_ios: number;
        bw_bytes: number;
        iops: number;
        runtime: number;
        clat_ns: { percentile?: Record<string, number> };
      };
    }[];
  };
  const job = json.jobs[0];
  if (job === undefined) throw new Error('fio reported no job');
  if (job.error !== 0) throw new Error(`fio job failed with error ${job.error}`);
  const read = job.read;
  const pct = read.clat_ns.percentile ?? {};
  return {
    bytes: read.io_bytes,
    ios: read.total_ios,
    bytesPerSecond: read.bw_bytes,
    iops: read.iops,
    runtimeMs: read.runtime,
    p50Ns: pct[PERCENTILES.p50] ?? Number.NaN,
    p99Ns: pct[PERCENTILES.p99] ?? Number.NaN,
    p999Ns: pct[PERCENTILES.p999] ?? Number.NaN,
  };
}

/** A running fio job. */
export interface FioRun {
  readonly process: ToolProcess;
  /** Resolves with the job's reads once fio has exited. */
  readonly done: Promise<FioReads>;
}

/**
 * Starts one fio job reading NBD export `uri` with the given job options (`--rw`, `--bs`,
 * …), asking for the p50/p99/p99.9 completion latencies. Only one fio at a time should
 * run for `cpuSeconds` to be fio's alone.
 */
export function startFio(name: string, uri: string, jobOptions: readonly string[]): FioRun {
  let stdout = '';
  const cpuBefore = reapedChildrenCpuSeconds();
  const process = spawnTool(
    'fio',
    [
      `--name=${name}`,
      '--ioengine=nbd',
      `--uri=${uri}`,
      ...jobOptions,
      `--percentile_list=50:99:99.9`,
      '--output-format=json',
    ],
    {
      onStdoutLine: (line) => {
        stdout += `${line}\n`;
      },
    },
  );
  const done = process.exited.then(async (code) => {
    if (code !== 0) throw exitedError(process, code, `reading ${uri}`);
    const cpuAfter = reapedChildrenCpuSeconds();
    try {
      return { ...parseFioJson(stdout), cpuSeconds: (await cpuAfter) - (await cpuBefore) };
    } catch (error) {
      throw new Error(`cannot parse fio's output: ${(error as Error).message}\n${process.output()}`);
    }
  });
  done.catch(() => {});
  return { process, done };
}

/** Runs one fio job to its end (see {@link startFio}). */
export function runFio(name: string, uri: string, jobOptions: readonly string[]): Promise<FioReads> {
  return startFio(name, uri, jobOptions).done;
}
