/**
 * The shape of a benchmark result: what `<name>.json` holds and what the table and
 * plot writers render. Raw samples are kept next to their summary so a later
 * reader can recompute anything, and settings sit next to the numbers they produced.
 */

import type { MachineInfo } from './machine.js';
import { type SampleStats, summarize } from './stats.js';
import { mbPerSecond } from './units.js';

/** A scalar that can be stored in JSON and printed in a table cell. */
export type Scalar = string | number | boolean;

/** One measured (or skipped) case: one row of a table, one bar of a plot. */
export interface CaseResult {
  readonly name: string;
  /** Bytes processed by one operation, the unit that `secondsPerOp` times. */
  readonly bytesPerOp: number;
  /** Raw samples: seconds per operation, one entry per sample. Empty when skipped. */
  readonly secondsPerOp: readonly number[];
  /** Summary of `secondsPerOp`; absent when skipped. */
  readonly stats?: SampleStats;
  /** `bytesPerOp` over the mean of `secondsPerOp`, in decimal MB/s. */
  readonly throughputMBps?: number;
  /** Why the case did not run (a missing tool, an old Node); the row says so. */
  readonly skipped?: string;
  /** Case-specific numbers for the extra columns of its section (chunk counts, RSS). */
  readonly details?: Readonly<Record<string, Scalar>>;
}

/** How an extra column renders a `details` value. */
export type DetailFormat = 'bytes' | 'integer' | 'decimal' | 'text' | 'seconds' | 'ratio';

/** An extra column of a section's table, read from each case's `details[key]`. */
export interface DetailColumn {
  readonly key: string;
  readonly label: string;
  readonly format: DetailFormat;
}

/** A plain table (e.g. compression ratios) that is not a timing table. */
export interface PlainTable {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** Per column: right-align numbers. Defaults to left for the first column, right for the rest. */
  readonly align?: readonly ('left' | 'right')[];
}

/** A group of cases compared with each other: one timing table, one block of the plot. */
export interface Section {
  readonly title: string;
  /** Header of the mean column, naming the operation: `mean / 4 MiB chunk`, `mean / backup`. */
  readonly meanLabel: string;
  readonly cases: readonly CaseResult[];
  readonly columns?: readonly DetailColumn[];
  readonly notes?: readonly string[];
}

/** One series of a {@link SeriesPlot}: a value per iteration. */
export interface PlotSeries {
  readonly name: string;
  readonly values: readonly number[];
}

/**
 * A plot of a value per iteration (seconds per live restore, series A, B and C, as in
 * PBS's picture); when a result has one, its SVG is this plot instead of the bar chart.
 */
export interface SeriesPlot {
  /** The plot's own title; the result's title when absent. */
  readonly title?: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** Unit after the medians in the legend (`s`, `ms`, `MiB`). */
  readonly unit?: string;
  readonly series: readonly PlotSeries[];
  /** A line under the title: the settings that produced the numbers. */
  readonly subtitle?: string;
  /** The goal of this value, drawn as a dotted line (e.g. `goal: p99 ≤ 50 ms`). */
  readonly goal?: { readonly value: number; readonly label: string };
}

/** A plot of one goal's value (guest p99, memory) written beside the main plot. */
export interface GoalFigure extends SeriesPlot {
  /** File name part: `<benchmark>-<slug>.svg` and `.png`. */
  readonly slug: string;
}

/** Everything one run of one benchmark produced. */
export interface BenchResult {
  readonly benchmark: string;
  readonly title: string;
  readonly machine: MachineInfo;
  /** Git commit measured (set by the CLI), with a mark when the working tree differed from it. */
  readonly code?: string;
  /** Every setting that influences the numbers, defaults included. */
  readonly settings: Readonly<Record<string, Scalar>>;
  readonly sections: readonly Section[];
  /** Tables printed after the timing tables. */
  readonly tables?: readonly PlainTable[];
  readonly notes?: readonly string[];
  /** Benchmark-specific raw records (e.g. every iteration's measurements), kept in the JSON. */
  readonly raw?: Readonly<Record<string, unknown>>;
  /** Draw this plot instead of the throughput bar chart. */
  readonly plot?: SeriesPlot;
  /** One more plot per goal that is not run time, each in its own files. */
  readonly figures?: readonly GoalFigure[];
  /** Wall time of the whole run, setup included. */
  readonly durationSeconds: number;
}

/** Builds a measured case from its raw samples. */
export function measuredCase(
  name: string,
  bytesPerOp: number,
  secondsPerOp: readonly number[],
  details?: Readonly<Record<string, Scalar>>,
): CaseResult {
  const stats = summarize(secondsPerOp);
  return {
    name,
    bytesPerOp,
    secondsPerOp: [...secondsPerOp],
    stats,
    throughputMBps: mbPerSecond(bytesPerOp, stats.mean),
    ...(details === undefined ? {} : { details }),
  };
}

/** Builds the row of a case that could not run, with the reason it shows. */
export function skippedCase(name: string, reason: string, bytesPerOp = 0): CaseResult {
  return { name, bytesPerOp, secondsPerOp: [], skipped: reason };
}

/** The slowest measured case of a list (lowest throughput), the baseline of "vs slowest". */
export function slowestThroughput(cases: readonly CaseResult[]): number | undefined {
  let slowest: number | undefined;
  for (const c of cases) {
    if (c.throughputMBps === undefined) continue;
    if (slowest === undefined || c.throughputMBps < slowest) slowest = c.throughputMBps;
  }
  return slowest;
}
