/**
 * How `bench live-restore` reports its three systems side by side: A (PBS before the
 * 2021 rewrite), C (PBS today, the honest anchor) and B (liverestore). From the
 * iterations of one run it builds the timing section, the per-iteration and CPU tables,
 * B's speed-ups over A and over C (paired per iteration, median with range) against the
 * goals, and the plot's series.
 */

import {
  type CaseResult,
  type DetailColumn,
  type GoalFigure,
  measuredCase,
  type PlainTable,
  type PlotSeries,
} from './result.js';
import { summarize } from './stats.js';
import { formatBytes, formatNumber } from './units.js';

/** A and C are PBS's read paths (before and after 2021), B is liverestore. */
export type System = 'A' | 'B' | 'C';

/** The order of the systems within an iteration, in tables and in the plot. */
export const SYSTEMS: readonly System[] = ['A', 'C', 'B'];

export const SYSTEM_NAMES: Readonly<Record<System, string>> = {
  A: 'A: old PBS read path',
  C: 'C: PBS today',
  B: 'B: liverestore',
};

/** Goals of B's speed-up (issue 14): over C, the honest anchor, and over A. */
export const SPEEDUP_GOALS: Readonly<Record<'A' | 'C', number>> = { A: 2.5, C: 1.5 };

/** Goal of B's guest-read p99 during the copy, milliseconds. */
export const GUEST_P99_GOAL_MS = 50;

/** The measurements of one iteration of one system. */
export interface Iteration {
  readonly system: System;
  readonly drives: number;
  readonly iteration: number;
  readonly seconds: number;
  readonly copySeconds: readonly number[];
  readonly guestReads: number;
  readonly guestReadsPlanned: number;
  readonly guestP50Ms: number;
  readonly guestP99Ms: number;
  readonly guestMaxMs: number;
  readonly chunkRefs: number;
  readonly chunkFetches: number;
  /** Distinct non-zero chunks of the drives: the fewest fetches a full copy can need. */
  readonly minFetches: number;
  readonly fetchedBytes: number;
  /** 1 − fetches / references: the share of chunk references that cost no fetch. */
  readonly hitRate: number;
  readonly peakRssBytes: number | null;
  /**
   * CPU seconds from start to end of the iteration (process start-up excluded for the
   * reader): the reading process (NBD server or API child, all threads), liverestore
   * serve, the proxy, the NBD clients (this process), and every other process on the
   * machine (the machine's busy time minus ours; other work on a shared machine).
   */
  readonly cpuSeconds: Readonly<Record<'reader' | 'serve' | 'proxy' | 'client' | 'others', number>>;
  readonly stats?: Record<string, number>;
}

/** B's speed-up over one other system: that system's time / B's, per iteration. */
export interface Speedup {
  readonly values: readonly number[];
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export function ms(value: number): string {
  return `${formatNumber(value)} ms`;
}

export function pct(value: number): string {
  return Number.isFinite(value) ? `${formatNumber(100 * value)} %` : 'n/a';
}

export function rssText(value: number | null): string {
  return value === null ? 'n/a' : formatBytes(value);
}

export function median(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : summarize(values).median;
}

/** The systems the runs hold (a run may leave some out: `--series`), in {@link SYSTEMS} order. */
export function systemsOf(runs: readonly Iteration[]): System[] {
  return SYSTEMS.filter((system) => runs.some((r) => r.system === system));
}

/** The runs of `system`, in iteration order. */
export function runsOf(runs: readonly Iteration[], system: System): Iteration[] {
  return runs.filter((r) => r.system === system);
}

/**
 * B's speed-up over `other`, paired per iteration (the runs hold both, same count), or
 * undefined when the run left either out.
 */
export function speedupOver(runs: readonly Iteration[], other: 'A' | 'C'): Speedup | undefined {
  const b = runsOf(runs, 'B');
  const others = runsOf(runs, other);
  if (b.length === 0 || others.length === 0) return undefined;
  const values = others.map((r, i) => r.seconds / b[i]!.seconds);
  const s = summarize(values);
  return { values, median: s.median, min: s.min, max: s.max };
}

/** "2.21× (range 2.08–2.40×, 12 pairs)" */
export function speedupText(s: Speedup): string {
  return `${formatNumber(s.median)}× (range ${formatNumber(s.min)}–${formatNumber(s.max)}×, ${s.values.length} pairs)`;
}

const SYSTEM_COLUMNS: readonly DetailColumn[] = [
  { key: 'median', label: 'median', format: 'text' },
  { key: 'p50', label: 'guest p50', format: 'text' },
  { key: 'p99', label: 'guest p99', format: 'text' },
  { key: 'hitRate', label: 'hit rate', format: 'text' },
  { key: 'fetches', label: 'chunk fetches', format: 'integer' },
  { key: 'rss', label: 'peak RSS', format: 'text' },
];

function systemCase(system: System, runs: readonly Iteration[], bytes: number): CaseResult {
  const rss = runs.map((r) => r.peakRssBytes ?? Number.NaN).filter((v) => Number.isFinite(v));
  return measuredCase(
    SYSTEM_NAMES[system],
    bytes,
    runs.map((r) => r.seconds),
    {
      median: `${formatNumber(median(runs.map((r) => r.seconds)))} s`,
      p50: ms(median(runs.map((r) => r.guestP50Ms))),
      p99: ms(median(runs.map((r) => r.guestP99Ms))),
      hitRate: pct(median(runs.map((r) => r.hitRate))),
      fetches: Math.round(median(runs.map((r) => r.chunkFetches))),
      rss: rssText(median(rss) || null),
    },
  );
}

/** The timing section's cases and columns: one case per system run, A, C, B. */
export function systemCases(
  runs: readonly Iteration[],
  imageBytes: number,
): { cases: CaseResult[]; columns: readonly DetailColumn[] } {
  return {
    cases: systemsOf(runs).map((system) => systemCase(system, runsOf(runs, system), imageBytes)),
    columns: SYSTEM_COLUMNS,
  };
}

/** One row per iteration and system, in the order they ran. */
export function iterationTable(runs: readonly Iteration[]): PlainTable {
  const b = runsOf(runs, 'B');
  const systems = systemsOf(runs);
  return {
    title: `Per iteration (${systems.join(', ')} in turn: ${systems.map((s) => `${s}1`).join(', ')}, ${systems.map((s) => `${s}2`).join(', ')}, …); "× B" is the system's time over B's in the same iteration`,
    columns: [
      'iteration',
      'system',
      'seconds',
      '× B',
      'guest p50',
      'guest p99',
      'hit rate',
      'chunk fetches',
      'peak RSS',
    ],
    rows: runs.map((r) => {
      const rb = b.find((x) => x.iteration === r.iteration);
      return [
        String(r.iteration),
        r.system,
        formatNumber(r.seconds),
        r.system === 'B' || rb === undefined ? '–' : `${formatNumber(r.seconds / rb.seconds)}×`,
        ms(r.guestP50Ms),
        ms(r.guestP99Ms),
        pct(r.hitRate),
        `${r.chunkFetches} (${formatNumber(r.fetchedBytes / 1e6)} MB)`,
        rssText(r.peakRssBytes),
      ];
    }),
  };
}

/** Median CPU seconds per iteration of each component, one row per system. */
export function cpuTable(runs: readonly Iteration[]): PlainTable {
  const row = (system: System): string[] => {
    const rs = runsOf(runs, system);
    const m = (k: keyof Iteration['cpuSeconds']): string =>
      formatNumber(median(rs.map((r) => r.cpuSeconds[k])));
    return [
      SYSTEM_NAMES[system],
      formatNumber(median(rs.map((r) => r.seconds))),
      m('reader'),
      m('serve'),
      m('proxy'),
      m('client'),
      m('others'),
    ];
  };
  return {
    title:
      'CPU seconds per iteration (median): the reading process, liverestore serve, the proxy, the NBD clients, and everything else on the machine',
    columns: ['system', 'wall s', 'reader', 'serve', 'proxy', 'clients', 'other processes'],
    rows: systemsOf(runs).map(row),
  };
}

/** The lines that state B's speed-ups and guest p99 against their goals (those the run measured). */
export function goalNotes(runs: readonly Iteration[]): string[] {
  const line = (other: 'A' | 'C', what: string): string[] => {
    const s = speedupOver(runs, other);
    if (s === undefined) return [];
    const goal = SPEEDUP_GOALS[other];
    return [
      `B's speed-up over ${what} (${other} s / B s, paired per iteration): median ${speedupText(s)}; goal ≥ ${formatNumber(goal)}×: ${s.median >= goal ? 'met' : 'missed'}.`,
    ];
  };
  const p99 = (system: System): number => median(runsOf(runs, system).map((r) => r.guestP99Ms));
  const systems = systemsOf(runs);
  const p99s = systems.map((system) => `${system} ${ms(p99(system))}`).join(', ');
  const bGoal = systems.includes('B')
    ? `; goal for B < ${GUEST_P99_GOAL_MS} ms: ${p99('B') < GUEST_P99_GOAL_MS ? 'met' : 'missed'}`
    : '';
  return [
    ...line('C', 'C, PBS today (the honest anchor)'),
    ...line('A', 'A, the old PBS read path'),
    `Guest-read p99 latency during the copy (median over iterations): ${p99s}${bGoal}.`,
  ];
}

/**
 * Seconds per iteration of each system, for the plot: A, B, then C, so that A and B keep
 * the colours of the earlier A/B plots (red, blue) and C takes the next one.
 */
export function plotSeries(runs: readonly Iteration[]): PlotSeries[] {
  return plotOrder(runs).map((system) => ({
    name: SYSTEM_NAMES[system],
    values: runsOf(runs, system).map((r) => r.seconds),
  }));
}

/** The systems the runs hold in plot order: A, B, C (the colours of the earlier plots). */
function plotOrder(runs: readonly Iteration[]): System[] {
  const held = systemsOf(runs);
  return (['A', 'B', 'C'] as const).filter((system) => held.includes(system));
}

/** The goal figures beside the time plot: guest p99 (with its goal) and peak RSS per iteration. */
export function goalFigures(runs: readonly Iteration[], subtitle: string): GoalFigure[] {
  const series = (value: (r: Iteration) => number): PlotSeries[] =>
    plotOrder(runs).map((system) => ({
      name: SYSTEM_NAMES[system],
      values: runsOf(runs, system).map(value),
    }));
  return [
    {
      slug: 'p99',
      title: 'Guest read p99 latency per iteration, during the copy',
      xLabel: 'iteration',
      yLabel: 'p99 latency of guest reads, ms',
      unit: 'ms',
      subtitle,
      series: series((r) => r.guestP99Ms),
      goal: { value: GUEST_P99_GOAL_MS, label: `goal for B: < ${GUEST_P99_GOAL_MS} ms` },
    },
    {
      slug: 'memory',
      title: 'Peak RSS of the reading process per iteration',
      xLabel: 'iteration',
      yLabel: 'peak RSS, MiB',
      unit: 'MiB',
      subtitle,
      series: series((r) => (r.peakRssBytes ?? Number.NaN) / (1024 * 1024)),
    },
  ];
}
