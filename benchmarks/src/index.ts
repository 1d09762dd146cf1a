/**
 * @liverestore/benchmarks: the `pnpm bench` benchmarks and the helpers they share
 * (statistics, tables, plots), exported for tests and for later benchmarks.
 */

export type { BenchContext, Benchmark, OptionSpec } from './benchmark.js';
export { benchmarkHelp, type CliIo, COMMON_OPTIONS, generalHelp, parseBenchArgs, runCli } from './cli.js';
export { ToolMissingError, UsageError } from './errors.js';
export { loadLine, type MachineInfo, machineBusySeconds, machineInfo, machineLine } from './machine.js';
export {
  blackhole,
  type Measurement,
  type MeasureOptions,
  measureInterleaved,
  measureSync,
} from './measure.js';
export { DEFAULT_OUT_DIR, type WrittenFiles, writeResultFiles } from './output.js';
export { isPng, type PngOutcome, plotRenderer, type SvgRenderer, writePng } from './png.js';
export { BENCHMARKS } from './registry.js';
export { markdownReport } from './report.js';
export {
  type BenchResult,
  type CaseResult,
  type DetailColumn,
  type DetailFormat,
  measuredCase,
  type PlainTable,
  type Scalar,
  type Section,
  skippedCase,
  slowestThroughput,
} from './result.js';
export { seriesPlot } from './series-plot.js';
export { mean, type SampleStats, summarize, tCritical95 } from './stats.js';
export { chooseScale, escapeXml, svgPlot } from './svg-plot.js';
export {
  formatDifference,
  markdownTable,
  plainTable,
  sectionTable,
  settingsLine,
  TOLERANCE_LABEL,
} from './table.js';
export {
  formatBytes,
  formatDuration,
  formatNumber,
  formatPercent,
  formatRate,
  mbPerSecond,
  parseBytes,
  parseList,
  parseNonNegativeInt,
  parsePositiveInt,
} from './units.js';
