/**
 * The result of `bench qemu` from its iterations: per workload one section for the copy
 * and one for the guest's reads (their bars are the plot), a table of CPU seconds and
 * peak RSS per process, every iteration's raw numbers, and issue 14's goals checked on
 * the rand64k workload.
 */

import type { GuestJob, WorkloadName } from './guest-workloads.js';
import type { SlowLoadPhases } from './load-phases.js';
import type { MachineInfo } from './machine.js';
import { qemuFigures } from './qemu-figures.js';
import { ROLE_LABELS, ROLES, type Role, SYSTEM_LABELS, type SystemName } from './qemu-systems.js';
import { type BenchResult, type CaseResult, measuredCase, type PlainTable, type Section } from './result.js';
import { summarize } from './stats.js';
import { formatBitRate, formatBytes, formatNumber } from './units.js';

const MiB = 1024 * 1024;

/** Settings of a run, as read from the command line. */

/** How bench qemu's store is written: the product default, as a user's backup would be. */
export const STORE_COMPRESSION = 'zstd' as const;

export interface QemuSettings {
  readonly iterations: number;
  readonly sizeBytes: number;
  readonly cacheBytes: number;
  readonly systems: readonly SystemName[];
  readonly workloads: readonly WorkloadName[];
  readonly rttMs: number;
  /** Bandwidth cap of the proxy per direction; 0 = none. */
  readonly bitsPerSecond: number;
  /** liverestore's systems run with --decode-as-arriving. */
  readonly decodeAsArriving: boolean;
  readonly seed: number;
  readonly quick: boolean;
  readonly dir: string;
}

/** One system restoring the disk once under one workload. */
export interface QemuIteration {
  readonly iteration: number;
  readonly workload: WorkloadName;
  readonly system: SystemName;
  /** Seconds from block-stream to BLOCK_JOB_COMPLETED, or live-restore's own (its "done" event). */
  readonly copySeconds: number;
  /** Wall seconds from the copy's start to fio's exit. */
  readonly guestSeconds: number;
  /** True when fio was done before the copy, i.e. every guest read ran during the copy. */
  readonly guestEndedFirst: boolean;
  readonly guestBytes: number;
  /** fio's read rate over its runtime, MiB/s. */
  readonly guestMiBps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  /** Chunk fetches (serve) or HTTP requests (lighttpd); null for nbdkit-file. */
  readonly fetches: number | null;
  readonly fetchedBytes: number | null;
  /** Distinct non-zero chunks of the disk: the fewest fetches a full copy needs. */
  readonly distinctChunks: number;
  /** CPU seconds in the iteration per process (start-up excluded) and fio's. */
  readonly cpuSeconds: Partial<Record<Role | 'fio', number>>;
  /** VmHWM of each process at the end of the iteration. */
  readonly peakRssBytes: Partial<Record<Role, number>>;
  /** liverestore systems: where the guest's slowest misses waited (its --trace-loads file). */
  readonly slowLoads?: SlowLoadPhases;
}

/** What {@link qemuResult} builds the result from. */
export interface QemuRun {
  readonly settings: QemuSettings;
  readonly machine: MachineInfo;
  readonly runs: readonly QemuIteration[];
  readonly jobs: readonly GuestJob[];
  readonly distinctChunks: number;
  readonly storedBytes: number;
  readonly durationSeconds: number;
}

function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length === 0 ? Number.NaN : summarize(finite).median;
}

/** `median (min–max)`, or just the value for one sample. */
function spread(values: readonly number[], unit = ''): string {
  if (values.length === 0) return 'n/a';
  const st = summarize(values);
  const m = `${formatNumber(st.median)}${unit}`;
  return values.length === 1 ? m : `${m} (${formatNumber(st.min)}–${formatNumber(st.max)})`;
}

function ms(value: number): string {
  return Number.isFinite(value) ? `${formatNumber(value)} ms` : 'n/a';
}

function sumCpu(r: QemuIteration): number {
  return Object.values(r.cpuSeconds).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
}

function fetchText(rs: readonly QemuIteration[]): string {
  const f = rs.map((r) => r.fetches).filter((v): v is number => v !== null);
  if (f.length === 0) return 'n/a';
  const st = summarize(f);
  const range = f.length === 1 ? '' : ` (${st.min}–${st.max})`;
  return `${Math.round(st.median)}${range} / ${rs[0]!.distinctChunks}`;
}

function workloadSections(run: QemuRun, job: GuestJob): Section[] {
  const { settings: s } = run;
  const copyCases: CaseResult[] = [];
  const guestCases: CaseResult[] = [];
  for (const system of s.systems) {
    const rs = run.runs.filter((r) => r.workload === job.workload && r.system === system);
    if (rs.length === 0) continue;
    copyCases.push(
      measuredCase(
        system,
        s.sizeBytes,
        rs.map((r) => r.copySeconds),
        {
          copy: spread(
            rs.map((r) => r.copySeconds),
            ' s',
          ),
          fetches: fetchText(rs),
          cpu: formatNumber(median(rs.map(sumCpu))),
          rss: formatBytes(median(rs.map((r) => r.peakRssBytes.nbd ?? Number.NaN))),
        },
      ),
    );
    guestCases.push(
      measuredCase(
        system,
        job.plannedBytes,
        rs.map((r) => job.plannedBytes / (r.guestMiBps * MiB)),
        {
          rate: spread(rs.map((r) => r.guestMiBps)),
          p50: ms(median(rs.map((r) => r.p50Ms))),
          p99: ms(median(rs.map((r) => r.p99Ms))),
          p999: ms(median(rs.map((r) => r.p999Ms))),
          during: `${rs.filter((r) => r.guestEndedFirst).length}/${rs.length}`,
        },
      ),
    );
  }
  return [
    {
      title: `${job.workload}: copy of the ${formatBytes(s.sizeBytes)} disk while the guest reads`,
      meanLabel: 'mean / copy',
      cases: copyCases,
      columns: [
        { key: 'copy', label: 'copy s, median (min–max)', format: 'text' },
        { key: 'fetches', label: 'fetches / distinct chunks', format: 'text' },
        { key: 'cpu', label: 'CPU s, all processes', format: 'text' },
        { key: 'rss', label: 'NBD server peak RSS', format: 'text' },
      ],
    },
    {
      title: `${job.workload}: guest reads during the copy (${job.description})`,
      meanLabel: 'mean / job',
      cases: guestCases,
      columns: [
        { key: 'rate', label: 'guest MiB/s, median (min–max)', format: 'text' },
        { key: 'p50', label: 'p50', format: 'text' },
        { key: 'p99', label: 'p99', format: 'text' },
        { key: 'p999', label: 'p99.9', format: 'text' },
        { key: 'during', label: 'ended before the copy', format: 'text' },
      ],
    },
  ];
}

function cpuTable(run: QemuRun): PlainTable {
  const rows: string[][] = [];
  for (const workload of run.settings.workloads) {
    for (const system of run.settings.systems) {
      const rs = run.runs.filter((r) => r.workload === workload && r.system === system);
      if (rs.length === 0) continue;
      const cpu = (role: Role | 'fio'): string => {
        const v = median(rs.map((r) => r.cpuSeconds[role] ?? Number.NaN));
        return Number.isFinite(v) ? formatNumber(v) : '–';
      };
      const rss = (role: Role): string => {
        const v = median(rs.map((r) => r.peakRssBytes[role] ?? Number.NaN));
        return Number.isFinite(v) ? formatBytes(v) : '–';
      };
      rows.push([
        workload,
        system,
        ...ROLES.map(cpu),
        cpu('fio'),
        formatNumber(median(rs.map(sumCpu))),
        ...ROLES.map(rss),
      ]);
    }
  }
  return {
    title: 'CPU seconds per iteration and peak RSS per process (medians over iterations)',
    columns: [
      'workload',
      'system',
      ...ROLES.map((r) => `${r} CPU s`),
      'fio CPU s',
      'total CPU s',
      ...ROLES.map((r) => `${r} peak RSS`),
    ],
    rows,
  };
}

function iterationTable(run: QemuRun): PlainTable {
  return {
    title: 'Every iteration (systems alternate within an iteration; the first one rotates)',
    columns: ['#', 'workload', 'system', 'copy s', 'guest MiB/s', 'p50', 'p99', 'p99.9', 'fetches', 'CPU s'],
    rows: run.runs.map((r) => [
      String(r.iteration),
      r.workload,
      r.system,
      formatNumber(r.copySeconds),
      formatNumber(r.guestMiBps),
      ms(r.p50Ms),
      ms(r.p99Ms),
      ms(r.p999Ms),
      r.fetches === null ? '–' : `${r.fetches} (${formatBytes(r.fetchedBytes ?? 0)})`,
      formatNumber(sumCpu(r)),
    ]),
  };
}

/** Issue 14's goals, checked on rand64k for each liverestore system against nbdkit curl. */
function goalNotes(run: QemuRun): string[] {
  const of = (system: SystemName) => run.runs.filter((r) => r.workload === 'rand64k' && r.system === system);
  const curl = of('nbdkit-curl');
  if (curl.length === 0) return [];
  const curlP99 = median(curl.map((r) => r.p99Ms));
  const curlRate = median(curl.map((r) => r.guestMiBps));
  const curlCopy = median(curl.map((r) => r.copySeconds));
  const verdict = (ok: boolean): string => (ok ? 'met' : 'missed');
  const notes: string[] = [];
  for (const system of ['lr-nbd', 'lr-live'] as const) {
    const rs = of(system);
    if (rs.length === 0) continue;
    const p99 = median(rs.map((r) => r.p99Ms));
    const rate = median(rs.map((r) => r.guestMiBps));
    const copy = median(rs.map((r) => r.copySeconds));
    const fetches = median(rs.map((r) => r.fetches ?? Number.NaN));
    const distinct = rs[0]!.distinctChunks;
    notes.push(
      `Goals of issue 14 for ${system} (rand64k, medians; nbdkit-curl: p99 ${ms(curlP99)}, ${formatNumber(curlRate)} MiB/s, copy ${formatNumber(curlCopy)} s): ` +
        `guest p99 ${ms(p99)} ≤ 50 ms and ≤ 3× nbdkit-curl's: ${verdict(p99 <= 50 && p99 <= 3 * curlP99)}; ` +
        `guest ${formatNumber(rate)} MiB/s ≥ 50 % of nbdkit-curl's: ${verdict(rate >= 0.5 * curlRate)}; ` +
        `copy ${formatNumber(copy)} s ≤ nbdkit-curl's: ${verdict(copy <= curlCopy)}; ` +
        `${Math.round(fetches)} chunk fetches ≤ ${distinct} distinct + 2 %: ${verdict(fetches <= distinct * 1.02)}.`,
    );
  }
  return notes;
}

/**
 * Where the guest's slowest misses waited, per liverestore system and workload: the mean
 * phases of the slowest tenth of the urgent loads, medians over the iterations.
 */
function slowLoadNotes(run: QemuRun): string[] {
  const notes: string[] = [];
  for (const job of run.jobs)
    for (const system of ['lr-nbd', 'lr-live'] as const) {
      const traced = run.runs
        .filter((r) => r.workload === job.workload && r.system === system)
        .flatMap((r) => (r.slowLoads === undefined ? [] : [r.slowLoads]));
      if (traced.length === 0) continue;
      const m = (phase: keyof SlowLoadPhases): string => ms(median(traced.map((p) => p[phase])));
      const twice = median(traced.map((p) => p.sourceLoads - p.distinctSourceChunks));
      const arriving = median(traced.map((p) => p.arrivingLoads));
      notes.push(
        `Where ${system}'s slowest misses wait (${job.workload}; --trace-loads, the tenth of ${Math.round(median(traced.map((p) => p.urgentLoads)))} urgent loads a guest waited longest for, means, median of ${traced.length} iterations): ` +
          `a guest waited ${m('urgentWaitMs')}; from the load's start ${m('totalMs')} = memory ${m('memoryWaitMs')} (cache pages ${m('pagesWaitMs')}, then blob-budget bytes) + blob ${m('blobMs')} + waiting for a decode thread ${m('decodeWaitMs')} + decode ${m('decodeMs')}. ` +
          `Chunks fetched and decoded more than once (the trace's loads from the source less their distinct chunks): ${twice}.` +
          (run.settings.decodeAsArriving ? ` Urgent loads decoded as their blob arrived: ${arriving}.` : ''),
      );
    }
  return notes;
}

/** Builds the benchmark result of a run. */
export function qemuResult(run: QemuRun): BenchResult {
  const s = run.settings;
  const sections = run.jobs.flatMap((job) => workloadSections(run, job));
  return {
    benchmark: 'qemu',
    title: `QEMU live restore of a ${formatBytes(s.sizeBytes)} disk: liverestore vs nbdkit, guest fio during the copy`,
    machine: run.machine,
    settings: {
      iterations: s.iterations,
      sizeBytes: s.sizeBytes,
      cacheBytes: s.cacheBytes,
      systems: s.systems.join(','),
      workloads: s.workloads.join(','),
      rttMs: s.rttMs,
      bandwidth: formatBitRate(s.bitsPerSecond),
      decodeAsArriving: s.decodeAsArriving,
      seed: s.seed,
      quick: s.quick,
      distinctChunks: run.distinctChunks,
      storedBytes: run.storedBytes,
      chunkBytes: 4 * MiB,
      compress: STORE_COMPRESSION,
    },
    sections,
    tables: [cpuTable(run), iterationTable(run)],
    notes: [
      ...goalNotes(run),
      ...slowLoadNotes(run),
      ...s.systems.map((system) => `${system}: ${SYSTEM_LABELS[system]}.`),
      `Copy: QMP block-stream from the command to BLOCK_JOB_COMPLETED (qemu-storage-daemon on a qcow2 overlay of the backing export), or for live-restore the seconds its --json "done" event reports (from the start of its copy, which starts with the process, to every region local and persisted). "mean / copy" and its throughput are of the whole disk (${formatBytes(s.sizeBytes)}).`,
      'Guest: one fio job (--ioengine=nbd) on the disk the guest would use, started right after the copy; MiB/s is fio\'s read rate over its runtime, p50/p99/p99.9 its completion-latency percentiles. "ended before the copy" counts iterations in which every guest read ran during the copy.',
      "Fetches: for liverestore, chunk requests `liverestore serve` answered (liverestore_http_chunk_fetches_total); for nbdkit-curl, the requests for the image in lighttpd's access log (one Range request per read nbdkit's cache filter passes on); nbdkit-file fetches nothing. Bytes are body bytes sent.",
      `CPU seconds: /proc/PID/stat utime+stime of each process from when the system was ready to the end of the iteration (start-up excluded); fio's from this process's reaped-children times. Roles: ${ROLES.map((r) => `${r} = ${ROLE_LABELS[r]}`).join('; ')}. Peak RSS is VmHWM at the end of the iteration; every process is fresh per iteration.`,
    ],
    raw: { iterations: run.runs, jobs: run.jobs },
    figures: qemuFigures(run),
    durationSeconds: run.durationSeconds,
  };
}
