/**
 * Markdown tables in the style of undici's benchmarks: one row per case with its
 * sample count, mean, ± tolerance, throughput and its difference to the slowest case,
 * so a reader sees at a glance how precise a number is and what it is compared with.
 * Cells are padded so the Markdown also reads well as plain text on a terminal.
 */

import type { BenchResult, CaseResult, DetailColumn, PlainTable, Scalar, Section } from './result.js';
import { slowestThroughput } from './result.js';
import { formatBytes, formatDuration, formatNumber, formatPercent, formatRate } from './units.js';

/** Column header of the tolerance: what `±` means in every table. */
export const TOLERANCE_LABEL = '± (95% CI)';

function escapeCell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/**
 * Renders rows as a Markdown table. `align` is per column (default: first left, others
 * right); every row must have as many cells as there are columns.
 */
export function markdownTable(
  columns: readonly string[],
  rows: readonly (readonly string[])[],
  align?: readonly ('left' | 'right')[],
): string {
  for (const row of rows) {
    if (row.length !== columns.length) {
      throw new RangeError(`a row has ${row.length} cells for ${columns.length} columns`);
    }
  }
  const cells = [columns, ...rows].map((row) => row.map(escapeCell));
  const widths = columns.map((_, i) => Math.max(3, ...cells.map((row) => row[i]!.length)));
  const alignOf = (i: number): 'left' | 'right' => align?.[i] ?? (i === 0 ? 'left' : 'right');
  const pad = (text: string, i: number): string =>
    alignOf(i) === 'left' ? text.padEnd(widths[i]!) : text.padStart(widths[i]!);
  const line = (row: readonly string[]): string => `| ${row.map(pad).join(' | ')} |`;
  const rule = `| ${widths.map((w, i) => (alignOf(i) === 'left' ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`;
  const [header, ...body] = cells;
  return [line(header!), rule, ...body.map(line)].join('\n');
}

/**
 * How much faster a case is than the slowest: `–` for the slowest itself, `+52.3 %`,
 * and for large gaps also the factor, `+3,600 % (×37)`.
 */
export function formatDifference(throughput: number, slowest: number): string {
  if (throughput === slowest) return '–';
  const ratio = throughput / slowest;
  const percent = formatPercent((ratio - 1) * 100, '+');
  return ratio >= 2 ? `${percent} (×${formatNumber(ratio)})` : percent;
}

function formatDetail(value: Scalar | undefined, column: DetailColumn): string {
  if (value === undefined) return '';
  if (typeof value !== 'number') return String(value);
  switch (column.format) {
    case 'bytes':
      return formatBytes(value);
    case 'integer':
      return Math.round(value).toLocaleString('en-US');
    case 'decimal':
      return formatNumber(value);
    case 'seconds':
      return formatDuration(value);
    case 'ratio':
      return `${formatNumber(value)}×`;
    case 'text':
      return String(value);
  }
}

/** The cells of one case row; a skipped case says why in the mean column. */
function caseRow(c: CaseResult, slowest: number | undefined, columns: readonly DetailColumn[]): string[] {
  const details = columns.map((col) => formatDetail(c.details?.[col.key], col));
  if (c.stats === undefined || c.throughputMBps === undefined || slowest === undefined) {
    return [c.name, '0', `skipped: ${c.skipped ?? 'not measured'}`, '', '', '', ...details.map(() => '')];
  }
  return [
    c.name,
    String(c.stats.count),
    formatDuration(c.stats.mean),
    formatPercent(c.stats.ci95Percent, '±'),
    formatRate(c.throughputMBps),
    formatDifference(c.throughputMBps, slowest),
    ...details,
  ];
}

/** The timing table of one section: a row per case, in the section's order. */
export function sectionTable(section: Section): string {
  const columns = section.columns ?? [];
  const slowest = slowestThroughput(section.cases);
  return markdownTable(
    [
      'case',
      'samples',
      section.meanLabel,
      TOLERANCE_LABEL,
      'throughput',
      'vs slowest',
      ...columns.map((c) => c.label),
    ],
    section.cases.map((c) => caseRow(c, slowest, columns)),
  );
}

/** Renders a {@link PlainTable} with its title as a bold line above it. */
export function plainTable(table: PlainTable): string {
  return `**${table.title}**\n\n${markdownTable(table.columns, table.rows, table.align)}`;
}

/** The settings of a run as one compact line: `samples=10, chunks=8, …`. */
export function settingsLine(settings: BenchResult['settings']): string {
  return Object.entries(settings)
    .map(([key, value]) => `${key}=${String(value)}`)
    .join(', ');
}
