/**
 * The goal figures of `bench qemu`, beside its bar chart: for the workload the goals are
 * checked on (rand64k), one plot per goal of issue 14 — copy time, guest p99, guest
 * MiB/s — and one of peak memory, each with a marker per iteration and system and the
 * goal as a dotted line.
 */

import type { WorkloadName } from './guest-workloads.js';
import type { QemuIteration, QemuRun } from './qemu-report.js';
import type { SystemName } from './qemu-systems.js';
import type { GoalFigure, PlotSeries } from './result.js';
import { summarize } from './stats.js';
import { formatBytes, formatNumber } from './units.js';

/** The workload issue 14's goals are measured on. */
export const GOAL_WORKLOAD: WorkloadName = 'rand64k';
/** Guest p99 latency goal during the copy, ms. */
export const GUEST_P99_GOAL_MS = 50;
const MiB = 1024 * 1024;

function runsOf(run: QemuRun, system: SystemName): QemuIteration[] {
  return run.runs.filter((r) => r.workload === GOAL_WORKLOAD && r.system === system);
}

function medianOf(values: readonly number[]): number | undefined {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length === 0 ? undefined : summarize(finite).median;
}

/** Peak RSS of all the system's processes together in one iteration, MiB. */
function totalRssMiB(r: QemuIteration): number {
  return Object.values(r.peakRssBytes).reduce((sum, v) => sum + (v ?? 0), 0) / MiB;
}

/** The figures of a run; none when it did not run the goal workload. */
export function qemuFigures(run: QemuRun): GoalFigure[] {
  const systems = run.settings.systems.filter((system) => runsOf(run, system).length > 0);
  if (systems.length === 0) return [];
  const series = (value: (r: QemuIteration) => number): PlotSeries[] =>
    systems.map((system) => ({ name: system, values: runsOf(run, system).map(value) }));
  const curl = runsOf(run, 'nbdkit-curl');
  const curlCopy = medianOf(curl.map((r) => r.copySeconds));
  const curlRate = medianOf(curl.map((r) => r.guestMiBps));
  const subtitle = `${GOAL_WORKLOAD} guest during the copy, ${formatBytes(run.settings.sizeBytes)} disk, liverestore cache ${formatBytes(run.settings.cacheBytes)}; a marker per iteration`;
  const common = { xLabel: 'iteration', subtitle } as const;
  return [
    {
      ...common,
      slug: 'copy',
      title: 'Copy time per iteration',
      yLabel: 'seconds to copy the whole disk',
      unit: 's',
      series: series((r) => r.copySeconds),
      ...(curlCopy === undefined
        ? {}
        : { goal: { value: curlCopy, label: `goal: ≤ nbdkit-curl's median, ${formatNumber(curlCopy)} s` } }),
    },
    {
      ...common,
      slug: 'p99',
      title: 'Guest read p99 latency per iteration',
      yLabel: 'p99 latency of guest reads, ms',
      unit: 'ms',
      series: series((r) => r.p99Ms),
      goal: { value: GUEST_P99_GOAL_MS, label: `goal: ≤ ${GUEST_P99_GOAL_MS} ms` },
    },
    {
      ...common,
      slug: 'guest-rate',
      title: 'Guest read rate per iteration',
      yLabel: 'guest reads, MiB/s',
      unit: 'MiB/s',
      series: series((r) => r.guestMiBps),
      ...(curlRate === undefined
        ? {}
        : {
            goal: {
              value: curlRate / 2,
              label: `goal: ≥ 50 % of nbdkit-curl's median, ${formatNumber(curlRate / 2)} MiB/s`,
            },
          }),
    },
    {
      ...common,
      slug: 'memory',
      title: 'Peak memory per iteration (all processes of the system)',
      yLabel: 'sum of peak RSS, MiB',
      unit: 'MiB',
      series: series(totalRssMiB),
    },
  ];
}
